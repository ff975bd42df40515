-- ERP order lines under their order number; discount and tax are rates.
{{ config(materialized='incremental', unique_key='order_id') }}
SELECT
    o.order_number AS order_id,
    CAST(l.line_number AS INTEGER) AS line_number,
    CAST(NULL AS BIGINT) AS shop_order_id,
    p.sku,
    CAST(l.product_id AS BIGINT) AS product_id,
    CAST(l.quantity AS INTEGER) AS quantity,
    CAST(l.unit_price AS DECIMAL(18, 2)) AS unit_price,
    CAST(l.discount AS DECIMAL(6, 4)) AS discount,
    CAST(l.tax AS DECIMAL(6, 4)) AS tax,
    CAST(l.line_amount AS DECIMAL(18, 2)) AS line_amount,
    'erp' AS source_system,
    CAST(l.updated_at AS TIMESTAMP) AS updated_at
FROM raw_erp.sales_order_lines AS l
LEFT JOIN raw_erp.sales_orders AS o ON o.order_id = l.order_id
LEFT JOIN raw_erp.products AS p ON p.product_id = l.product_id

{% changed_keys %}
-- an order's lines are replaced together: those of orders whose lines, header or products changed
SELECT o.order_number AS order_id
FROM {{ changes('raw_erp.sales_order_lines') }} AS l
LEFT JOIN raw_erp.sales_orders AS o ON o.order_id = l.order_id
UNION ALL
SELECT order_number FROM {{ changes('raw_erp.sales_orders') }}
UNION ALL
SELECT o.order_number
FROM raw_erp.sales_order_lines AS l
JOIN raw_erp.sales_orders AS o ON o.order_id = l.order_id
WHERE l.product_id IN (SELECT product_id FROM {{ changes('raw_erp.products') }})
