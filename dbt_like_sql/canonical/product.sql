-- The product catalogue: every system's products, the latest version of each product id.
SELECT DISTINCT ON (p.product_id) p.*
FROM {{ union_staging('product') }} AS p
ORDER BY p.product_id, p.updated_at DESC
