-- ERP sales orders, keyed by order number; a web order carries the shop's order id.
{{ config(materialized='incremental', unique_key='order_id') }}
SELECT
    o.order_number AS order_id,
    CAST(o.order_id AS BIGINT) AS erp_order_id,
    CAST(nullif(trim(CAST(o.external_ref AS VARCHAR)), '') AS BIGINT) AS shop_order_id,
    'erp' AS customer_system,
    CAST(o.customer_id AS VARCHAR) AS customer_source_id,
    CAST(o.order_date AS DATE) AS order_date,
    o.status,
    CAST(round(CAST(o.total_amount AS DECIMAL(18, 2)) * CAST(fx.rate_to_usd AS DECIMAL(12, 6)), 2) AS DECIMAL(18, 2)) AS total_amount,
    upper(o.currency) AS currency,
    CAST(fx.rate_to_usd AS DECIMAL(12, 6)) AS fx_rate,
    o.channel,
    'erp' AS source_system,
    CAST(o.updated_at AS TIMESTAMP) AS updated_at,
    o._hub_deleted_at IS NOT NULL AS is_deleted,
    CAST(o._hub_deleted_at AS TIMESTAMP) AS deleted_at
FROM raw_erp.sales_orders AS o
LEFT JOIN seeds.fx_rates AS fx ON fx.currency = upper(o.currency)

{% changed_keys %}
SELECT order_number AS order_id FROM {{ changes('raw_erp.sales_orders') }}
