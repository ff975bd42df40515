-- ERP order lines under their order number; discount and tax are rates.
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
