"""Reverse syncs, declared as data: what leaves the hub, for which destination, matched on what.

Each `Sync` names its source (SQL over canonical), its destination writer (`system.object`,
declared with the system in `integration_hub.systems`), its mode, match key, field mapping
and allow-list; `integration_hub.engine.sync_engine` plans and pushes it, `assets.reverse_sync`
makes one asset per sync. Which fields are personal data is not declared here: it follows
from the canonical model's PII flags through each source's column lineage (`Sync.pii`).
"""

import datetime as dt

from integration_hub.engine.sync_engine import SKIP_COLUMN, Sync

_HOUR = dt.timedelta(minutes=60)

_CUSTOMER_VALUE = """
    SELECT c.customer_id, c.account_number, c.name, lower(trim(c.email)) AS email, c.phone, c.country_code,
           c.segment, split_part(c.name, ' ', 1) AS first_name, substr(c.name, strpos(c.name, ' ') + 1) AS last_name,
           greatest(max(c.updated_at), max(o.updated_at)) AS changed_at,
           round(coalesce(sum(o.total_amount), 0), 2) AS lifetime_value, max(o.order_date) AS last_order_date
    FROM canonical.customer c LEFT JOIN canonical.sales_order o ON o.customer_id = c.customer_id
    GROUP BY c.customer_id, c.account_number, c.name, c.email, c.phone, c.country_code, c.segment
    ORDER BY c.customer_id"""
# A customer whose CRM account was matched without an account number (by email) cannot be
# upserted by account number: that would create a second account for the same customer. A
# customer with no CRM account at all is created there, with the contact details an account
# needs (`new_*`, empty for customers the CRM already knows: sales keeps those itself).
_CRM_ACCOUNT_VALUE = f"""
    SELECT v.*, CASE WHEN crm.customer_id IS NOT NULL AND NOT crm.by_number
                     THEN 'CRM account without account number (an upsert would duplicate it)' END AS {SKIP_COLUMN},
           CASE WHEN crm.customer_id IS NULL THEN v.email END AS new_email,
           CASE WHEN crm.customer_id IS NULL THEN v.phone END AS new_phone,
           CASE WHEN crm.customer_id IS NULL THEN cc.country_name END AS new_country,
           CASE WHEN crm.customer_id IS NULL THEN v.segment END AS new_industry
    FROM ({_CUSTOMER_VALUE}) v
    LEFT JOIN (SELECT customer_id, bool_or(match_rule = 'external_id') AS by_number FROM canonical.customer_xref
               WHERE system = 'crm' GROUP BY customer_id) crm ON crm.customer_id = v.customer_id
    LEFT JOIN seeds.country_codes cc ON cc.iso_code = v.country_code"""
_CUSTOMER, _ORDER, _INVOICE = (
    ("canonical", "customer"),
    ("canonical", "sales_order"),
    ("canonical", "invoice"),
)
_XREF = ("canonical", "customer_xref")
# Keys whose rows may have changed since a sync's last complete push (`Sync.changed_keys`).
_CHANGED_CUSTOMERS = """
    SELECT customer_id FROM {{ changes('canonical.customer') }}
    UNION ALL SELECT o.customer_id FROM canonical.sales_order o
    WHERE o.order_id IN (SELECT order_id FROM {{ changes('canonical.sales_order') }})"""
_CHANGED_ORDERS = """
    SELECT order_id FROM {{ changes('canonical.sales_order') }}
    UNION ALL SELECT o.order_id FROM canonical.sales_order o
    WHERE o.customer_id IN (SELECT customer_id FROM {{ changes('canonical.customer') }})"""

SYNCS: dict[str, Sync] = {
    s.name: s
    for s in [
        Sync(
            name="crm_accounts",
            description="Lifetime value and last order date onto CRM accounts, matched by account number "
            "(an account the hub creates also gets email, phone, country and industry). "
            "Customers without an account number, or whose CRM account has none, are counted as filtered.",
            source=_CRM_ACCOUNT_VALUE, destination="crm", object="accounts", mode="upsert", key="account_number",
            mapping={"AccountNumber": "account_number", "Name": "name", "Lifetime_Value__c": "lifetime_value",
                     "Last_Order_Date__c": "last_order_date", "Phone": "new_phone", "Email__c": "new_email",
                     "BillingCountry": "new_country", "Industry": "new_industry"},
            allow=frozenset({"AccountNumber", "Name", "Lifetime_Value__c", "Last_Order_Date__c", "Phone", "Email__c",
                             "BillingCountry", "Industry"}),
            # An account the hub creates gets the customer's contact details (`new_*` are empty for an
            # account the CRM has); the hub keeps the others up to date in the fields above only.
            on_create=frozenset({"Phone", "Email__c", "BillingCountry", "Industry"}),
            batch_size=200, deps=(_CUSTOMER, _ORDER, _XREF, ("seeds", "country_codes")),
            changed_keys=f"SELECT account_number FROM canonical.customer WHERE customer_id IN ({_CHANGED_CUSTOMERS})",
            changed_at="changed_at", latency_target=_HOUR,
        ),
        Sync(
            name="marketing_contacts",
            description="Customers as marketing contacts, upserted by email; phone numbers stay in the hub.",
            source=_CUSTOMER_VALUE, destination="marketing", object="contacts", mode="upsert", key="email",
            mapping={"email": "email", "firstname": "first_name", "lastname": "last_name", "country": "country_code",
                     "lifetime_value": "lifetime_value", "phone": "phone"},
            allow=frozenset({"email", "firstname", "lastname", "country", "lifetime_value"}),
            deps=(_CUSTOMER, _ORDER),
            changed_keys=f"SELECT lower(trim(email)) FROM canonical.customer WHERE customer_id IN ({_CHANGED_CUSTOMERS})",
            changed_at="changed_at", latency_target=_HOUR,
        ),
        Sync(
            name="support_orders",
            description="Every order into the support desk, so agents see status and total; matched by order id.",
            source="""
                SELECT o.order_id, o.status, o.is_deleted, o.total_amount, o.currency, o.order_date, o.channel,
                       greatest(o.updated_at, c.updated_at) AS changed_at,
                       lower(trim(c.email)) AS customer_email, c.name AS customer_name, c.phone AS customer_phone
                FROM canonical.sales_order o LEFT JOIN canonical.customer c ON c.customer_id = o.customer_id
                ORDER BY o.order_id""",
            destination="support", object="orders", mode="upsert", key="order_id",
            mapping={"external_id": "order_id", "status": "status", "total": "total_amount", "currency": "currency",
                     "order_date": "order_date", "channel": "channel", "customer_email": "customer_email",
                     "customer_name": "customer_name", "customer_phone": "customer_phone"},
            allow=frozenset({"external_id", "status", "total", "currency", "order_date", "channel",
                             "customer_email", "customer_name"}),
            changed_keys=_CHANGED_ORDERS,
            # A deleted order stays on the desk, marked deleted, so agents see what happened to it;
            # an order pushed under a key that is now an alias of its sticky id is retired the same way.
            on_delete="archive", archive=(("status", "deleted"),),
            aliases="SELECT source_order_id FROM canonical.order_xref WHERE source_order_id <> order_id",
            deps=(_CUSTOMER, _ORDER, ("canonical", "order_xref")),
            # The desk's bulk endpoint answers a batch quickly: 8 requests in flight keep it busy
            # where 4 left it idle between requests (BENCHMARKS.md, "Reverse sync push").
            concurrency=8,
            # The target of the script this sync replaced.
            changed_at="changed_at", latency_target=dt.timedelta(minutes=20),
        ),
        Sync(
            name="billing_invoices",
            description="An invoice for every fulfilled ERP order billing has none for, created exactly once.",
            source="""
                SELECT o.erp_order_number AS order_ref, lower(trim(c.email)) AS customer_email, 'usd' AS currency,
                       o.updated_at AS changed_at,
                       CAST(round(o.total_amount * 100) AS BIGINT) AS amount_due, o.order_date AS invoice_date
                FROM canonical.sales_order o JOIN canonical.customer c ON c.customer_id = o.customer_id
                WHERE o.status = 'fulfilled' AND o.erp_order_id IS NOT NULL AND NOT o.is_deleted
                  AND NOT EXISTS (SELECT 1 FROM canonical.invoice i WHERE i.order_id = o.order_id)
                ORDER BY o.order_id""",
            destination="billing", object="invoices", mode="insert", key="order_ref",
            mapping={"order_ref": "order_ref", "customer_email": "customer_email", "currency": "currency",
                     "amount_due": "amount_due", "invoice_date": "invoice_date"},
            allow=frozenset({"order_ref", "customer_email", "currency", "amount_due", "invoice_date"}),
            # Guarded by `recon/order_invoices`: when its blocking ERROR checks fail (far more invoices
            # missing than the business plants, i.e. billing's rows did not all land), creating the
            # "missing" invoices would bill twice, so the sync does not run in that run.
            batch_size=1, concurrency=4, deps=(_CUSTOMER, _ORDER, _INVOICE, ("recon", "order_invoices")),
            changed_keys="""
                SELECT o.erp_order_number FROM canonical.sales_order o
                WHERE o.order_id IN (SELECT order_id FROM {{ changes('canonical.sales_order') }}
                                     UNION ALL SELECT i.order_id FROM canonical.invoice i
                                     WHERE i.invoice_id IN (SELECT invoice_id FROM {{ changes('canonical.invoice') }}))
                   OR o.customer_id IN (SELECT customer_id FROM {{ changes('canonical.customer') }})""",
            changed_at="changed_at", latency_target=_HOUR,
        ),
    ]
}  # fmt: skip


def get_sync(name: str) -> Sync:
    try:
        return SYNCS[name]
    except KeyError:
        raise ValueError(f"unknown sync {name!r}; declared: {', '.join(SYNCS)}") from None
