-- Billing payments: integer cents to decimals, converted to USD at the seeded rate.
{{ config(materialized='incremental', unique_key='payment_id') }}
SELECT
    p.id AS payment_id,
    p.invoice AS invoice_id,
    upper(p.currency) AS currency,
    CAST(CAST(p.amount AS DECIMAL(18, 0)) * 0.01 AS DECIMAL(18, 2)) AS amount,
    CAST(fx.rate_to_usd AS DECIMAL(12, 6)) AS fx_rate,
    CAST(round(CAST(p.amount AS DECIMAL(18, 0)) * 0.01 * CAST(fx.rate_to_usd AS DECIMAL(12, 6)), 2) AS DECIMAL(18, 2)) AS amount_usd,
    p.method,
    p.status,
    CAST(p.created AS TIMESTAMP) AS paid_at,
    'billing' AS source_system,
    CAST(p.updated_at AS TIMESTAMP) AS updated_at
FROM raw_billing.payments AS p
LEFT JOIN seeds.fx_rates AS fx ON fx.currency = upper(p.currency)

{% changed_keys %}
SELECT id AS payment_id FROM {{ changes('raw_billing.payments') }}
