-- Billing invoices: integer cents to decimals, converted to USD at the seeded rate
-- (the rate is kept per row).
{{ config(materialized='incremental', unique_key='invoice_id') }}
SELECT
    i.id AS invoice_id,
    i.number AS invoice_number,
    nullif(trim(i.order_ref), '') AS order_id,
    nullif(lower(trim(i.customer_email)), '') AS customer_email,
    upper(i.currency) AS currency,
    CAST(CAST(i.amount_due AS DECIMAL(18, 0)) * 0.01 AS DECIMAL(18, 2)) AS amount,
    CAST(fx.rate_to_usd AS DECIMAL(12, 6)) AS fx_rate,
    CAST(round(CAST(i.amount_due AS DECIMAL(18, 0)) * 0.01 * CAST(fx.rate_to_usd AS DECIMAL(12, 6)), 2) AS DECIMAL(18, 2)) AS amount_usd,
    CAST(round(CAST(i.amount_paid AS DECIMAL(18, 0)) * 0.01 * CAST(fx.rate_to_usd AS DECIMAL(12, 6)), 2) AS DECIMAL(18, 2)) AS amount_paid_usd,
    i.status,
    CAST(i.invoice_date AS DATE) AS invoice_date,
    'billing' AS source_system,
    CAST(i.updated_at AS TIMESTAMP) AS updated_at
FROM raw_billing.invoices AS i
LEFT JOIN seeds.fx_rates AS fx ON fx.currency = upper(i.currency)

{% changed_keys %}
SELECT id AS invoice_id FROM {{ changes('raw_billing.invoices') }}
