-- Order lines of canonical sales orders: the lines of the order's winning record (for a web
-- order the ERP also holds, the ERP's lines stand for it), under the canonical order id; the
-- product is resolved by SKU when the source has no product id.
{{ config(materialized='incremental', unique_key='order_id') }}
SELECT DISTINCT ON (coalesce(x.order_id, l.order_id), l.line_number)
    coalesce(x.order_id, l.order_id) AS order_id,
    l.line_number,
    l.sku,
    coalesce(l.product_id, p.product_id) AS product_id,
    l.quantity,
    l.unit_price,
    l.discount,
    l.tax,
    l.line_amount,
    l.source_system,
    l.updated_at
FROM {{ union_staging('order_line') }} AS l
LEFT JOIN canonical.order_xref AS x ON x.source_order_id = l.order_id
LEFT JOIN canonical.product AS p ON p.sku = l.sku
WHERE coalesce(x.member_rank, 0) = 0
ORDER BY coalesce(x.order_id, l.order_id), l.line_number, l.updated_at DESC

{% changed_keys %}
-- an order's lines are replaced together: orders whose lines or links changed, and orders
-- with a line of a changed product
SELECT coalesce(x.order_id, k.order_id) AS order_id
FROM {{ union_changes('order_line') }} AS k
LEFT JOIN canonical.order_xref AS x ON x.source_order_id = k.order_id
UNION ALL
SELECT order_id FROM {{ changes('canonical.order_xref') }}
UNION ALL
SELECT coalesce(x.order_id, l.order_id)
FROM {{ union_staging('order_line') }} AS l
LEFT JOIN canonical.order_xref AS x ON x.source_order_id = l.order_id
WHERE l.sku IN (
    SELECT p.sku FROM canonical.product AS p
    WHERE p.product_id IN (SELECT product_id FROM {{ changes('canonical.product') }})
)
