-- Order lines of canonical sales orders. Lines of a shop order the ERP also holds are left
-- out (the ERP's lines stand for that order); the product is resolved by SKU when the
-- source has no product id.
SELECT DISTINCT ON (l.order_id, l.line_number)
    l.order_id,
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
LEFT JOIN canonical.product AS p ON p.sku = l.sku
WHERE NOT EXISTS (
    SELECT 1 FROM canonical.sales_order AS o
    WHERE o.shop_order_id = l.shop_order_id AND o.order_id <> l.order_id
)
ORDER BY l.order_id, l.line_number, l.updated_at DESC
