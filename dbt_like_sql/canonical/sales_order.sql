-- Sales orders: one row per canonical order. `canonical.order_xref` links the records of one
-- order across systems (a web order the ERP refers to by its external reference is the same
-- order) and keeps its id sticky; the best-ranked record (the ERP's, when the ERP holds the
-- order) wins survivorship, and the customer is the canonical customer of its customer record.
-- An order deleted at its source stays, with `is_deleted` and `deleted_at`.
{{ config(materialized='incremental', unique_key='order_id') }}
SELECT DISTINCT ON (x.order_id)
    x.order_id,
    CASE WHEN o.source_system = 'erp' THEN o.order_id END AS erp_order_number,
    o.erp_order_id,
    o.shop_order_id,
    o.customer_system,
    o.customer_source_id,
    o.order_date,
    o.status,
    o.total_amount,
    o.currency,
    o.fx_rate,
    o.channel,
    o.source_system,
    o.updated_at,
    o.is_deleted,
    o.deleted_at,
    c.customer_id
FROM {{ union_staging('sales_order') }} AS o
JOIN canonical.order_xref AS x ON x.source_order_id = o.order_id
LEFT JOIN canonical.customer_xref AS c ON c.system = o.customer_system AND c.source_id = o.customer_source_id
ORDER BY x.order_id, x.member_rank

{% changed_keys %}
-- orders whose records, links between records, or customers changed
SELECT x.order_id
FROM {{ union_changes('sales_order') }} AS k
JOIN canonical.order_xref AS x ON x.source_order_id = k.order_id
UNION ALL
SELECT order_id FROM {{ changes('canonical.order_xref') }}
UNION ALL
SELECT x.order_id
FROM {{ union_staging('sales_order') }} AS o
JOIN canonical.order_xref AS x ON x.source_order_id = o.order_id
JOIN canonical.customer_xref AS c ON c.system = o.customer_system AND c.source_id = o.customer_source_id
WHERE c.customer_id IN (SELECT customer_id FROM {{ changes('canonical.customer_xref') }})
