-- The product catalogue: every system's products, the latest version of each product id.
{{ config(materialized='incremental', unique_key='product_id') }}
SELECT DISTINCT ON (p.product_id) p.*
FROM {{ union_staging('product') }} AS p
ORDER BY p.product_id, p.updated_at DESC

{% changed_keys %}
SELECT product_id FROM {{ union_changes('product') }} AS k
