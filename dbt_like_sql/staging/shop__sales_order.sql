-- Web-shop orders: money arrives as text (a malformed amount becomes NULL and is
-- quarantined by validation); fulfilment maps onto the ERP's status vocabulary.
{{ config(materialized='incremental', unique_key='order_id') }}
SELECT
    'SHOP-' || CAST(o.id AS VARCHAR) AS order_id,
    CAST(NULL AS BIGINT) AS erp_order_id,
    CAST(o.id AS BIGINT) AS shop_order_id,
    'shop' AS customer_system,
    CAST(o.customer__id AS VARCHAR) AS customer_source_id,
    CAST(o.created_at AS DATE) AS order_date,
    CASE o.fulfillment_status
        WHEN 'fulfilled' THEN 'fulfilled'
        WHEN 'partial' THEN 'partially_fulfilled'
        ELSE 'open'
    END AS status,
    CAST(round(
        CAST(CASE WHEN regexp_matches(CAST(o.total_price AS VARCHAR), '^-?[0-9]+(\.[0-9]+)?$')
                  THEN CAST(o.total_price AS VARCHAR) END AS DECIMAL(18, 2)) * CAST(fx.rate_to_usd AS DECIMAL(12, 6)), 2
    ) AS DECIMAL(18, 2)) AS total_amount,
    upper(o.currency) AS currency,
    CAST(fx.rate_to_usd AS DECIMAL(12, 6)) AS fx_rate,
    'web' AS channel,
    'shop' AS source_system,
    CAST(o.updated_at AS TIMESTAMP) AS updated_at,
    o._hub_deleted_at IS NOT NULL AS is_deleted,
    CAST(o._hub_deleted_at AS TIMESTAMP) AS deleted_at
FROM raw_shop.orders AS o
LEFT JOIN seeds.fx_rates AS fx ON fx.currency = upper(o.currency)

{% changed_keys %}
SELECT 'SHOP-' || CAST(id AS VARCHAR) AS order_id FROM {{ changes('raw_shop.orders') }}
