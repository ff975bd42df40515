-- Web-shop line items (dlt child table of orders): position from the list index, the
-- discount amount as a rate, no tax (the shop does not state it).
{{ config(materialized='incremental', unique_key='order_id') }}
SELECT
    'SHOP-' || CAST(o.id AS VARCHAR) AS order_id,
    CAST(li._dlt_list_idx + 1 AS INTEGER) AS line_number,
    CAST(o.id AS BIGINT) AS shop_order_id,
    trim(li.sku) AS sku,
    CAST(NULL AS BIGINT) AS product_id,
    CAST(li.quantity AS INTEGER) AS quantity,
    CAST(CAST(li.price AS VARCHAR) AS DECIMAL(18, 2)) AS unit_price,
    CAST(round(
        CAST(CAST(li.total_discount AS VARCHAR) AS DECIMAL(18, 2))
        / nullif(CAST(CAST(li.price AS VARCHAR) AS DECIMAL(18, 2)) * li.quantity, 0), 4
    ) AS DECIMAL(6, 4)) AS discount,
    CAST(NULL AS DECIMAL(6, 4)) AS tax,
    CAST(CAST(li.line_total AS VARCHAR) AS DECIMAL(18, 2)) AS line_amount,
    'shop' AS source_system,
    CAST(o.updated_at AS TIMESTAMP) AS updated_at
FROM raw_shop.orders__line_items AS li
LEFT JOIN raw_shop.orders AS o ON o._dlt_id = li._dlt_parent_id

{% changed_keys %}
-- an order's lines are replaced with it (dlt replaces the child rows of a reloaded order)
SELECT 'SHOP-' || CAST(id AS VARCHAR) AS order_id FROM {{ changes('raw_shop.orders') }}
