-- ERP products: the catalogue, prices converted to USD at the seeded rate.
{{ config(materialized='incremental', unique_key='product_id') }}
SELECT
    CAST(p.product_id AS BIGINT) AS product_id,
    trim(p.sku) AS sku,
    trim(p.name) AS name,
    p.brand,
    p.category,
    CAST(round(CAST(p.unit_price AS DECIMAL(18, 2)) * CAST(fx.rate_to_usd AS DECIMAL(12, 6)), 2) AS DECIMAL(18, 2)) AS unit_price,
    upper(p.currency) AS currency,
    CAST(fx.rate_to_usd AS DECIMAL(12, 6)) AS fx_rate,
    'erp' AS source_system,
    CAST(p.updated_at AS TIMESTAMP) AS updated_at
FROM raw_erp.products AS p
LEFT JOIN seeds.fx_rates AS fx ON fx.currency = upper(p.currency)

{% changed_keys %}
SELECT CAST(product_id AS BIGINT) AS product_id FROM {{ changes('raw_erp.products') }}
