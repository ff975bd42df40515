-- QuickBooks invoices: the ERP order number from the `Order Ref` custom field, amounts converted
-- to USD at the seeded rate (kept per row); paid when nothing is left to pay (`Balance`).
{{ config(materialized='incremental', unique_key='invoice_id') }}
SELECT
    i.id AS invoice_id,
    i.doc_number AS invoice_number,
    nullif(trim(ref.order_ref), '') AS order_id,
    nullif(lower(trim(i.bill_email__address)), '') AS customer_email,
    upper(i.currency_ref__value) AS currency,
    CAST(i.total_amt AS DECIMAL(18, 2)) AS amount,
    CAST(fx.rate_to_usd AS DECIMAL(12, 6)) AS fx_rate,
    CAST(round(CAST(i.total_amt AS DECIMAL(18, 2)) * CAST(fx.rate_to_usd AS DECIMAL(12, 6)), 2) AS DECIMAL(18, 2)) AS amount_usd,
    CAST(round((CAST(i.total_amt AS DECIMAL(18, 2)) - CAST(i.balance AS DECIMAL(18, 2))) * CAST(fx.rate_to_usd AS DECIMAL(12, 6)), 2) AS DECIMAL(18, 2)) AS amount_paid_usd,
    CASE WHEN CAST(i.balance AS DECIMAL(18, 2)) <= 0 THEN 'paid' ELSE 'open' END AS status,
    CAST(i.txn_date AS DATE) AS invoice_date,
    'billing' AS source_system,
    CAST(i.meta_data__last_updated_time AS TIMESTAMP) AS updated_at
FROM raw_billing.invoices AS i
LEFT JOIN (
    SELECT _dlt_parent_id, min(string_value) AS order_ref
    FROM raw_billing.invoices__custom_field WHERE name = 'Order Ref' GROUP BY _dlt_parent_id
) AS ref ON ref._dlt_parent_id = i._dlt_id
LEFT JOIN seeds.fx_rates AS fx ON fx.currency = upper(i.currency_ref__value)

{% changed_keys %}
SELECT id AS invoice_id FROM {{ changes('raw_billing.invoices') }}
