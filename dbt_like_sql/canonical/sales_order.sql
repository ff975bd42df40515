-- Sales orders: the ERP's orders plus web-shop orders the ERP never received. A shop order
-- the ERP refers to (its external reference) is the same order, and the ERP record wins;
-- the customer is the canonical customer of the ordering system's customer record.
SELECT DISTINCT ON (coalesce(CAST(o.shop_order_id AS VARCHAR), o.order_id)) o.*, x.customer_id
FROM {{ union_staging('sales_order') }} AS o
LEFT JOIN canonical.customer_xref AS x ON x.system = o.customer_system AND x.source_id = o.customer_source_id
ORDER BY coalesce(CAST(o.shop_order_id AS VARCHAR), o.order_id), o.erp_order_id IS NULL, o.updated_at DESC
