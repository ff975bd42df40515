-- QuickBooks payments received: the invoice each is applied to (`Line[].LinkedTxn`), amounts
-- converted to USD at the seeded rate. A received payment has no status of its own: it succeeded.
{{ config(materialized='incremental', unique_key='payment_id') }}
SELECT
    p.id AS payment_id,
    applied.invoice_id,
    upper(p.currency_ref__value) AS currency,
    CAST(p.total_amt AS DECIMAL(18, 2)) AS amount,
    CAST(fx.rate_to_usd AS DECIMAL(12, 6)) AS fx_rate,
    CAST(round(CAST(p.total_amt AS DECIMAL(18, 2)) * CAST(fx.rate_to_usd AS DECIMAL(12, 6)), 2) AS DECIMAL(18, 2)) AS amount_usd,
    p.payment_method_ref__name AS method,
    'succeeded' AS status,
    CAST(p.meta_data__create_time AS TIMESTAMP) AS paid_at,
    'billing' AS source_system,
    CAST(p.meta_data__last_updated_time AS TIMESTAMP) AS updated_at
FROM raw_billing.payments AS p
LEFT JOIN (
    SELECT _dlt_root_id, min(txn_id) AS invoice_id
    FROM raw_billing.payments__line__linked_txn WHERE txn_type = 'Invoice' GROUP BY _dlt_root_id
) AS applied ON applied._dlt_root_id = p._dlt_id
LEFT JOIN seeds.fx_rates AS fx ON fx.currency = upper(p.currency_ref__value)

{% changed_keys %}
SELECT id AS payment_id FROM {{ changes('raw_billing.payments') }}
