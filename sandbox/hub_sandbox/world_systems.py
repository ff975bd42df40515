"""What the other systems hold, derived from the ERP with the planted discrepancies applied.

Each `make_<system>` creates its tables in the generator's DuckDB from the ERP tables and
the `pick_<kind>` tables (`world_plants.py`), and returns the system's resources as Arrow
tables in the shape its API serves them: the web shop (orders with nested line items,
customers), the CRM (accounts, contacts), billing (invoices, payments) and the payment
processor's settlement lines.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa

from canonical import MONEY_TOLERANCE

EUR_USD = 1.08  # billing's EUR invoices convert at this rate (fx table in truth)

# ISO 3166 codes of the 25 TPC-H nations (the ERP stores names, the shop codes).
NATION_ISO = {
    "ALGERIA": "DZ", "ARGENTINA": "AR", "BRAZIL": "BR", "CANADA": "CA", "EGYPT": "EG",
    "ETHIOPIA": "ET", "FRANCE": "FR", "GERMANY": "DE", "INDIA": "IN", "INDONESIA": "ID",
    "IRAN": "IR", "IRAQ": "IQ", "JAPAN": "JP", "JORDAN": "JO", "KENYA": "KE", "MOROCCO": "MA",
    "MOZAMBIQUE": "MZ", "PERU": "PE", "CHINA": "CN", "ROMANIA": "RO", "SAUDI ARABIA": "SA",
    "VIETNAM": "VN", "RUSSIA": "RU", "UNITED KINGDOM": "GB", "UNITED STATES": "US",
}  # fmt: skip


def make_shop(db: duckdb.DuckDBPyConnection, anchor: dt.datetime) -> dict[str, pa.Table]:
    """The web shop: the ERP's web orders and their customers, plus shop-only orders and strangers."""
    db.execute("CREATE TABLE nation_iso AS SELECT unnest(map_keys(m)) AS n_name, unnest(map_values(m)) AS iso FROM (SELECT MAP(?, ?) AS m)",
               [list(NATION_ISO), list(NATION_ISO.values())])  # fmt: skip
    _shop_records(db, anchor)
    # ERP orders whose shop record is absent keep their external_ref (the ERP thinks they came from the web).
    orders = db.sql("""
        SELECT s.id, '#' || (s.id - 4500000000 + 1000) AS name,
               sc.email, ts(s.created_at) || 'Z' AS created_at, ts(s.updated_at) || 'Z' AS updated_at,
               'USD' AS currency, printf('%.2f', s.total) AS total_price,
               CASE WHEN s.fulfillment_status = 'fulfilled' THEN 'paid' ELSE 'pending' END AS financial_status,
               s.fulfillment_status,
               {'id': sc.id, 'email': sc.email, 'first_name': sc.first_name, 'last_name': sc.last_name, 'phone': sc.phone} AS customer,
               list({'id': s.id * 100 + l.line_number, 'sku': 'SKU-' || lpad(l.product_id::VARCHAR, 8, '0'),
                      'quantity': l.quantity, 'price': printf('%.2f', l.unit_price),
                      'total_discount': printf('%.2f', round(l.unit_price * l.quantity * l.discount, 2)),
                      'line_total': printf('%.2f', l.line_amount)} ORDER BY l.line_number) AS line_items
        FROM shop_orders_flat s
        JOIN shop_customers sc ON sc.id = 7000000000 + s.customer_id
        JOIN erp_lines l ON l.order_id = s.template_order_id
        GROUP BY s.id, sc.email, s.created_at, s.updated_at, s.total, s.fulfillment_status,
                 sc.id, sc.first_name, sc.last_name, sc.phone
        ORDER BY s.id
    """).to_arrow_table()
    customers = db.sql("""
        SELECT id, email, first_name, last_name, phone, country_code,
               ts(created_at) || 'Z' AS created_at, ts(updated_at) || 'Z' AS updated_at
        FROM shop_customers ORDER BY id""").to_arrow_table()
    return {"orders": orders, "customers": customers}


def _shop_records(db: duckdb.DuckDBPyConnection, anchor: dt.datetime) -> None:
    """`shop_customers` (emails and names as customers typed them) and `shop_orders_flat` (no lines yet)."""
    tol = MONEY_TOLERANCE
    db.execute(f"""
        CREATE TABLE shop_customers AS
        SELECT 7000000000 + c.customer_id AS id,
               CASE WHEN c.customer_id IN (SELECT k FROM pick_shop_customer_email_differs)
                    THEN lower(c.first_name) || '_' || lower(c.last_name) || c.customer_id * 7 || '@personal.example'
                    WHEN u('email_case', c.customer_id) < 0.3 THEN '  ' || upper(c.email[1]) || c.email[2:] || ' '
                    ELSE c.email END AS email,
               CASE WHEN u('name_case', c.customer_id) < 0.2 THEN upper(c.first_name) ELSE c.first_name END AS first_name,
               c.last_name,
               '+' || replace(c.phone, '-', ' ') AS phone,
               n.iso AS country_code,
               c.created_at + INTERVAL 3 DAY AS created_at, touched('shop_cust', c.customer_id) AS updated_at
        FROM erp_customers c JOIN nation_iso n ON n.n_name = c.country
        WHERE c.customer_id IN (SELECT customer_id FROM erp_orders WHERE channel = 'web')
        UNION ALL  -- strangers: a signup whose name, email and phone match nobody in the ERP
        SELECT 7900000000 + p.k, 'newsletter.' || p.k || '@signup.example', 'Visitor', 'Number' || p.k,
               '+99 000 ' || lpad((p.k % 1000)::VARCHAR, 3, '0') || ' ' || lpad((p.k % 10000)::VARCHAR, 4, '0'),
               'US', TIMESTAMP '{anchor:%Y-%m-%d}' - INTERVAL 20 DAY, touched('shop_stranger', p.k)
        FROM pick_shop_customer_unmatched p;

        CREATE TABLE shop_orders_flat AS
        SELECT (4500000000 + o.order_id) AS id, o.order_id AS template_order_id, o.customer_id,
               CASE WHEN o.order_id IN (SELECT k FROM pick_shop_amount_mismatch) THEN o.total_amount + 5 + (o.order_id % 45)
                    WHEN o.order_id IN (SELECT k FROM pick_shop_amount_rounding) THEN o.total_amount + {tol}
                    ELSE o.total_amount END AS total,
               CASE WHEN o.order_id IN (SELECT k FROM pick_shop_status_mismatch) THEN 'fulfilled'
                    WHEN o.status = 'fulfilled' THEN 'fulfilled'
                    WHEN o.status = 'partially_fulfilled' THEN 'partial' END AS fulfillment_status,
               o.created_at, o.updated_at + INTERVAL 2 MINUTE AS updated_at
        FROM erp_orders o
        WHERE o.channel = 'web' AND o.order_id NOT IN (SELECT k FROM pick_erp_order_missing_in_shop)
        UNION ALL  -- orders the ERP never received: a copy of a template order under a new id
        SELECT 4600000000 + o.order_id, o.order_id, o.customer_id, o.total_amount, NULL,
               o.created_at, o.updated_at + INTERVAL 3 MINUTE
        FROM erp_orders o WHERE o.order_id IN (SELECT k FROM pick_shop_order_missing_in_erp);
    """)


def make_crm(db: duckdb.DuckDBPyConnection) -> dict[str, pa.Table]:
    """The CRM: an account and a contact per ERP customer, less the missing, plus the duplicates."""
    db.execute("""
        CREATE TABLE crm_accounts AS
        SELECT '001' || lpad(c.customer_id::VARCHAR, 15, '0') AS Id, c.name AS Name,
               CASE WHEN c.customer_id IN (SELECT k FROM pick_crm_account_number_missing) THEN NULL
                    ELSE c.account_number END AS AccountNumber,
               c.email AS Email__c,
               '(' || split_part(c.phone, '-', 1) || ') ' || split_part(c.phone, '-', 2) || '-'
                   || split_part(c.phone, '-', 3) || split_part(c.phone, '-', 4) AS Phone,
               initcap(c.country) AS BillingCountry, initcap(c.segment) AS Industry,
               NULL::DOUBLE AS Lifetime_Value__c, NULL::VARCHAR AS Last_Order_Date__c,
               ts(c.created_at) || 'Z' AS CreatedDate, ts(touched('crm', c.customer_id)) || 'Z' AS LastModifiedDate,
               'crm-user' AS LastModifiedById
        FROM erp_customers c WHERE c.customer_id NOT IN (SELECT k FROM pick_crm_account_missing)
        UNION ALL  -- the duplicate: no account number, the name shouted and padded, email in capitals
        SELECT '001D' || lpad(c.customer_id::VARCHAR, 14, '0'), '  ' || upper(c.name) || ' ', NULL,
               upper(c.email), NULL, initcap(c.country), initcap(c.segment), NULL, NULL,
               ts(c.created_at) || 'Z', ts(touched('crm_dup', c.customer_id)) || 'Z', 'crm-user'
        FROM erp_customers c WHERE c.customer_id IN (SELECT k FROM pick_crm_duplicate_account);

        CREATE TABLE crm_contacts AS
        SELECT '003' || substr(a.Id, 4) AS Id, a.Id AS AccountId, c.first_name AS FirstName, c.last_name AS LastName,
               a.Email__c AS Email, a.Phone, a.CreatedDate, a.LastModifiedDate
        FROM crm_accounts a JOIN erp_customers c ON c.customer_id = substr(a.Id, 5)::BIGINT
        WHERE a.Id NOT LIKE '001D%';
    """)
    return {
        "accounts": db.sql("SELECT * FROM crm_accounts ORDER BY Id").to_arrow_table(),
        "contacts": db.sql("SELECT * FROM crm_contacts ORDER BY Id").to_arrow_table(),
    }


def make_billing(db: duckdb.DuckDBPyConnection) -> dict[str, pa.Table]:
    """Billing, in QuickBooks Online's `Invoice` and `Payment` shapes: an invoice per fulfilled ERP
    order (its order number in the `Order Ref` custom field) and the payments applied to them.

    `Balance` is what is left to pay: negative for an overpaid invoice (QuickBooks would keep the
    excess as an unapplied credit), so the amount paid stays readable from the invoice."""
    _billing_records(db)
    currency = "{'value': upper(i.currency), 'name': CASE upper(i.currency) WHEN 'EUR' THEN 'Euro' ELSE 'United States Dollar' END}"
    invoices = db.sql(f"""
        SELECT i.id AS "Id", '0' AS "SyncToken", 'QBO' AS domain, false AS sparse,
               i.number AS "DocNumber", strftime(i.invoice_date, '%Y-%m-%d') AS "TxnDate",
               {currency} AS "CurrencyRef",
               {{'value': i.customer_id::VARCHAR, 'name': i.customer_email}} AS "CustomerRef",
               {{'Address': i.customer_email}} AS "BillEmail",
               [{{'DefinitionId': '1', 'Name': 'Order Ref', 'Type': 'StringType', 'StringValue': i.order_ref}}] AS "CustomField",
               [{{'Id': '1', 'LineNum': 1, 'Amount': i.amount_due / 100, 'DetailType': 'SalesItemLineDetail',
                  'SalesItemLineDetail': {{'ItemRef': {{'value': '1', 'name': 'Goods'}}, 'Qty': 1}}}}] AS "Line",
               i.amount_due / 100 AS "TotalAmt",
               (i.amount_due - coalesce(p.amount, 0)) / 100 AS "Balance",
               {{'CreateTime': ts(i.updated_at) || '+00:00', 'LastUpdatedTime': ts(i.updated_at) || '+00:00'}} AS "MetaData"
        FROM billing_invoices i LEFT JOIN billing_payments p ON p.invoice = i.id ORDER BY i.id
    """).to_arrow_table()
    payments = db.sql(f"""
        SELECT p.id AS "Id", '0' AS "SyncToken", 'QBO' AS domain, false AS sparse,
               strftime(p.updated_at, '%Y-%m-%d') AS "TxnDate", p.amount / 100 AS "TotalAmt", 0.0 AS "UnappliedAmt",
               {currency.replace("i.", "p.")} AS "CurrencyRef",
               {{'value': p.customer_id::VARCHAR, 'name': p.customer_email}} AS "CustomerRef",
               {{'value': (1 + p.order_id % 3)::VARCHAR, 'name': p.method}} AS "PaymentMethodRef",
               [{{'Amount': p.amount / 100, 'LinkedTxn': [{{'TxnId': p.invoice, 'TxnType': 'Invoice'}}]}}] AS "Line",
               {{'CreateTime': ts(p.updated_at) || '+00:00', 'LastUpdatedTime': ts(p.updated_at) || '+00:00'}} AS "MetaData"
        FROM billing_payments p ORDER BY p.id
    """).to_arrow_table()
    return {"invoices": invoices, "payments": payments}


def _billing_records(db: duckdb.DuckDBPyConnection) -> None:
    """`billing_invoices` and `billing_payments`, amounts in cents, with the order each belongs to."""
    tol = MONEY_TOLERANCE
    db.execute(f"""
        CREATE TABLE billing_invoices AS
        WITH base AS (
            SELECT o.order_id, o.customer_id, o.order_number, c.email, o.order_date, o.updated_at,
                   CASE WHEN o.order_id IN (SELECT k FROM pick_invoice_amount_mismatch) THEN o.total_amount + 1 + (o.order_id % 90)
                        WHEN o.order_id IN (SELECT k FROM pick_invoice_amount_rounding) THEN o.total_amount - {tol}
                        ELSE o.total_amount END AS usd
            FROM erp_orders o JOIN erp_customers c USING (customer_id)
            WHERE o.status = 'fulfilled' AND o.order_id NOT IN (SELECT k FROM pick_invoice_missing)),
        inv AS (
            SELECT 'in_' || lpad(order_id::VARCHAR, 10, '0') AS id, 'INV-' || lpad(order_id::VARCHAR, 10, '0') AS number, *
            FROM base
            UNION ALL
            SELECT 'in_' || lpad(order_id::VARCHAR, 10, '0') || 'd', 'INV-' || lpad(order_id::VARCHAR, 10, '0') || '-2', *
            FROM base WHERE order_id IN (SELECT k FROM pick_invoice_duplicated))
        SELECT id, number, order_id, customer_id, order_number AS order_ref, email AS customer_email,
               CASE WHEN order_id IN (SELECT k FROM pick_invoice_in_eur) THEN 'eur' ELSE 'usd' END AS currency,
               CASE WHEN order_id IN (SELECT k FROM pick_invoice_in_eur) THEN round(usd / {EUR_USD} * 100)
                    ELSE round(usd * 100) END::BIGINT AS amount_due,
               order_date + 1 AS invoice_date, updated_at + INTERVAL 5 MINUTE AS updated_at
        FROM inv;

        CREATE TABLE billing_payments AS
        SELECT 'py_' || substr(i.id, 4) AS id, i.id AS invoice, i.currency,
               CASE WHEN i.order_id IN (SELECT k FROM pick_invoice_partially_paid) THEN i.amount_due // 2
                    WHEN i.order_id IN (SELECT k FROM pick_invoice_overpaid) THEN i.amount_due + 1000
                    ELSE i.amount_due END AS amount,
               ['card', 'sepa_debit', 'bank_transfer'][1 + i.order_id % 3] AS method,
               i.order_id, i.customer_id, i.customer_email, i.updated_at + INTERVAL 1 HOUR AS updated_at
        FROM billing_invoices i WHERE i.order_id NOT IN (SELECT k FROM pick_invoice_unpaid);
    """)


def make_settlement(db: duckdb.DuckDBPyConnection) -> dict[str, pa.Table]:
    """The payment processor's paid-out charges, as the lines of Stripe's itemized payout reconciliation
    report (`SETTLEMENT_COLUMNS`): every payment except the unsettled ones, paid out a day after it
    was taken, one payout a day; the accounting payment id in the PaymentIntent's metadata."""
    settlement = db.sql("""
        SELECT 'po_' || strftime(p.updated_at + INTERVAL 1 DAY, '%Y%m%d') AS automatic_payout_id,
               strftime(p.updated_at + INTERVAL 1 DAY, '%Y-%m-%d 00:00:00') AS automatic_payout_effective_at,
               'txn_' || substr(p.id, 4) AS balance_transaction_id,
               strftime(p.updated_at, '%Y-%m-%d %H:%M:%S') AS created_utc,
               lower(p.currency) AS currency,
               printf('%.2f', p.amount / 100) AS gross,
               printf('%.2f', round(p.amount * 0.029 + 30) / 100) AS fee,
               printf('%.2f', (p.amount - round(p.amount * 0.029 + 30)) / 100) AS net,
               'charge' AS reporting_category, 'ch_' || substr(p.id, 4) AS source_id,
               p.customer_email, 'ch_' || substr(p.id, 4) AS charge_id,
               'pi_' || substr(p.id, 4) AS payment_intent_id, p.invoice AS invoice_id,
               p.id AS "payment_metadata[payment_id]"
        FROM billing_payments p WHERE p.order_id NOT IN (SELECT k FROM pick_payment_not_settled)
        ORDER BY 2, 3
    """).to_arrow_table()
    return {"settlement": settlement}
