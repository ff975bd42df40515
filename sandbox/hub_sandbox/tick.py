"""The business runs on: one `tick` adds orders, fulfils open ones, deletes a few open ones
(`tick_deletes.py`) and changes customers' phones.

Every change is written consistently to every system that holds the record (ERP, shop,
billing and a new settlement file, CRM), stamped `updated_at` = the tick's time, which is
strictly after everything before it. Records named in the truth's record are never touched,
so the planted discrepancies stay exactly as recorded; the record's counts are updated (the
hub's own writes are followed when the truth is read, `hub_sandbox.truth`, never stored here).
Choices depend only on the seed, the tick number and the stores, never on the clock.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pyarrow as pa

from hub_sandbox import tick_deletes
from hub_sandbox.billing import ORDER_REF, qbo_time
from hub_sandbox.seed import read_world_info, write_settlements, write_world_info
from hub_sandbox.store import Store
from hub_sandbox.truth import read_record, write_record
from hub_sandbox.world_erp import WEB_SHARE

PRIORITIES = ["1-URGENT", "2-HIGH", "3-MEDIUM", "4-NOT SPECIFIED", "5-LOW"]
CENT = Decimal("0.01")


class TickError(RuntimeError):
    """The tick cannot run (no world yet); the message says what to do."""


class Erp:
    """The ERP database, SQLite or Postgres, behind `?` placeholders and one transaction."""

    def __init__(self, home: Path, url: str | None):
        self.postgres = bool(url)
        if url:
            import psycopg

            self.con = psycopg.connect(url)
            self.prefix = "erp."
        else:
            self.con = sqlite3.connect(home / "sandbox" / "erp.sqlite", timeout=30)
            self.con.execute("PRAGMA busy_timeout=30000")
            self.prefix = ""

    def sql(self, query: str) -> str:
        query = query.replace("{t}", self.prefix)
        return query.replace("?", "%s") if self.postgres else query

    def rows(self, query: str, args=()) -> list[tuple]:
        return self.con.execute(self.sql(query), args).fetchall()

    def write(self, query: str, rows: list[tuple]) -> None:
        if not rows:
            return
        if self.postgres:
            with self.con.cursor() as cur:
                cur.executemany(self.sql(query), rows)
        else:
            self.con.executemany(self.sql(query), rows)

    def stamp(self, at: dt.datetime):
        return at if self.postgres else at.strftime("%Y-%m-%d %H:%M:%S")

    def money(self, value: Decimal):
        return value if self.postgres else float(value)

    def day(self, value: dt.date):
        return value if self.postgres else str(value)


def protected_keys(record: dict) -> tuple[set[int], set[int]]:
    """ERP order ids and customer ids that the seeded record names: a tick never touches them.

    Give it the record (`read_record`), not the truth as read: the record names every planted
    order and customer, including those the hub has written for since.
    """
    orders, customers = set(), set()
    for section in ("discrepancies", "non_findings"):
        for entries in record[section].values():
            for entry in entries:
                for key, value in entry.items():
                    if key in ("order_id",):
                        orders.add(value)
                    elif key in ("customer_id", "twin_customer_id"):
                        customers.add(value)
                    elif key in ("invoice_id", "payment_id"):
                        orders.add(int(value[3:13]))
                    elif key == "shop_order_id":
                        orders.add(value - 4600000000)
    return orders, customers


def run_tick(home: Path, fraction: float = 0.01) -> dict:
    """Apply one tick to every store; returns the new/changed record counts per system resource."""
    home = home.resolve()
    info = read_world_info(home)
    if info is None:
        raise TickError(f"no sandbox world at {home / 'sandbox'}; run `hub sandbox up` first")
    if not 0 < fraction <= 1:
        raise TickError(f"fraction must be in (0, 1] (got {fraction})")
    number = info.get("ticks", 0) + 1
    record = read_record(home)
    rng = random.Random(f"{info['seed']}:tick:{number}")
    tick = Tick(number, _clock(info), rng, home, info.get("erp_url"))
    try:
        tick.run(fraction, *protected_keys(record))
    finally:
        tick.close()
    files = _write_settlement_file(home, info, tick)
    _count_in_truth(record, tick)
    tick_deletes.note_in_record(record, tick)
    write_record(home, record)
    write_world_info(home, info | {"ticks": number, "last_tick_at": tick.stamp})
    return {
        "tick": number,
        "at": tick.stamp,
        "records": tick.counts,
        "settlement_files": [str(f) for f in files],
    }


def _clock(info: dict) -> dt.datetime:
    """Now, to the second, and strictly after the previous tick, even within the same second."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
    last = info.get("last_tick_at")
    if last:
        now = max(now, dt.datetime.strptime(last, "%Y-%m-%dT%H:%M:%SZ") + dt.timedelta(seconds=1))
    return now


class Tick:
    """One tick: its clock and random choices, the stores it changes and the records it collects.

    The ERP is changed in one transaction; the REST stores get what the tick collected once
    the ERP has committed (`save`).
    """

    def __init__(self, number: int, now: dt.datetime, rng: random.Random, home: Path, erp_url: str | None):
        self.number, self.now, self.rng = number, now, rng
        self.stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.erp = Erp(home, erp_url)
        box = home / "sandbox"
        self.shop, self.billing, self.crm = (
            Store(box / "shop.sqlite"), Store(box / "billing.sqlite"), Store(box / "crm.sqlite")
        )  # fmt: skip
        self.counts = {name: {"new": 0, "changed": 0, "deleted": 0} for name in [
            "erp.customers", "erp.sales_orders", "erp.sales_order_lines", "shop.orders", "shop.customers",
            "crm.accounts", "crm.contacts", "billing.invoices", "billing.payments", "payments.settlement"]}  # fmt: skip
        self.customers: dict[int, tuple] = {}  # ERP customer id -> (email, phone)
        self.shop_orders: list[tuple] = []  # the new web orders first, then the fulfilled ones
        self.shop_customers: list[tuple] = []
        self.accounts: list[tuple] = []
        self.contacts: list[tuple] = []
        self.invoices: list[tuple] = []
        self.payments: list[tuple] = []
        self.settlement: list[dict] = []
        self.deleted: dict[str, list] = {}  # "<system>.<resource>" -> the keys deleted (truth.py)
        self.shop_deleted: list[tuple] = []  # (shop order id, name, line item ids)

    def run(self, fraction: float, skip_orders: set[int], skip_customers: set[int]) -> None:
        """New orders, fulfilled open orders and new phones, about `fraction` of each population."""
        erp = self.erp
        self.customers = {
            r[0]: r[1:] for r in erp.rows("SELECT customer_id, email, phone FROM {t}customers ORDER BY 1")
        }
        eligible = [c for c in self.customers if c not in skip_customers]
        n_orders, last_order_id = erp.rows("SELECT count(*), max(order_id) FROM {t}sales_orders")[0]
        size = max(1, round(fraction * n_orders))
        products = erp.rows("SELECT product_id, sku, unit_price FROM {t}products ORDER BY 1")
        open_orders = [r for r in erp.rows(
            "SELECT order_id, customer_id, channel, total_amount, order_number, order_date FROM {t}sales_orders "
            "WHERE status = 'open' ORDER BY 1") if r[0] not in skip_orders]  # fmt: skip
        self.place_orders(range(last_order_id + 1, last_order_id + 1 + size), eligible, products)
        fulfilled = self.fulfil(open_orders, size)
        self.change_phones(eligible, max(1, round(fraction * len(self.customers))))
        gone = tick_deletes.choose(self.rng, open_orders, fulfilled, fraction, self.billing)
        tick_deletes.delete_orders(self, gone)
        self.save()

    def place_orders(self, order_ids: range, eligible: list[int], products: list[tuple]) -> None:
        """New orders in the ERP; web orders in the shop too; fulfilled ones billed and paid."""
        erp, rng, now = self.erp, self.rng, self.now
        orders, lines_rows, new_shop_orders = [], [], 0
        for order_id in order_ids:
            customer_id = rng.choice(eligible)
            shop_customer = self.shop.get("customers", 7000000000 + customer_id)
            web = rng.random() < WEB_SHARE and shop_customer is not None
            fulfilled = rng.random() < 0.5
            lines, total = _order_lines(rng, order_id, products)
            number = f"SO-{order_id:010d}"
            orders.append((order_id, number, customer_id, erp.day(now.date()), "fulfilled" if fulfilled else "open",
                           erp.money(total), "USD", "web" if web else "direct",
                           str(4500000000 + order_id) if web else None,
                           rng.choice(PRIORITIES), erp.stamp(now), erp.stamp(now)))  # fmt: skip
            lines_rows += [(o, n, p, q, erp.money(u), erp.money(d), erp.money(t), erp.money(a), erp.stamp(now))
                           for o, n, p, _, q, u, d, t, a in lines]  # fmt: skip
            if web:
                self.shop_orders.append(
                    shop_order(order_id, shop_customer, total, fulfilled, lines, self.stamp)
                )
                new_shop_orders += 1
            if fulfilled:
                self.bill(order_id, number, customer_id, total, now.date())
        erp.write("INSERT INTO {t}sales_orders VALUES (" + ", ".join("?" * 12) + ")", orders)
        erp.write("INSERT INTO {t}sales_order_lines VALUES (" + ", ".join("?" * 9) + ")", lines_rows)
        self.counts["erp.sales_orders"]["new"] = len(orders)
        self.counts["erp.sales_order_lines"]["new"] = len(lines_rows)
        self.counts["shop.orders"]["new"] = new_shop_orders

    def fulfil(self, open_orders: list[tuple], size: int) -> set[int]:
        """Up to `size` open orders become fulfilled in the ERP (and the shop), and are billed and
        paid; returns their order ids."""
        fulfil = sorted(self.rng.sample(open_orders, min(size, len(open_orders))))
        self.erp.write("UPDATE {t}sales_orders SET status = 'fulfilled', updated_at = ? WHERE order_id = ?",
                       [(self.erp.stamp(self.now), o[0]) for o in fulfil])  # fmt: skip
        self.counts["erp.sales_orders"]["changed"] = len(fulfil)
        for order_id, customer_id, channel, total, number, order_date in fulfil:
            if channel == "web" and (body := self.shop.get("orders", 4500000000 + order_id)):
                body |= {
                    "fulfillment_status": "fulfilled",
                    "financial_status": "paid",
                    "updated_at": self.stamp,
                }
                self.shop_orders.append((body["id"], None, self.stamp, body))
                self.counts["shop.orders"]["changed"] += 1
            if isinstance(order_date, str):
                order_date = dt.date.fromisoformat(order_date)
            self.bill(order_id, number, customer_id, Decimal(str(total)).quantize(CENT), order_date)
        return {o[0] for o in fulfil}

    def change_phones(self, eligible: list[int], n: int) -> None:
        """Up to `n` customers get a new phone number (unique) in the ERP, the CRM and the shop."""
        rng, stamp = self.rng, self.stamp
        phones = {c[1] for c in self.customers.values()}
        erp_phones = []
        for customer_id in sorted(rng.sample(eligible, min(len(eligible), n))):
            country = self.customers[customer_id][1].split("-")[0]
            while (phone := f"{country}-{rng.randint(100, 999)}-{rng.randint(100, 999)}-"
                             f"{rng.randint(1000, 9999)}") in phones:  # fmt: skip
                pass
            phones.add(phone)
            cc, a, b, c = phone.split("-")
            erp_phones.append((phone, self.erp.stamp(self.now), customer_id))
            if account := self.crm.get("accounts", f"001{customer_id:015d}"):
                account |= {
                    "Phone": f"({cc}) {a}-{b}{c}",
                    "LastModifiedDate": stamp,
                    "LastModifiedById": "crm-user",
                }
                self.accounts.append((account["Id"], account["AccountNumber"], stamp, account))
            if contact := self.crm.get("contacts", f"003{customer_id:015d}"):
                contact |= {"Phone": f"({cc}) {a}-{b}{c}", "LastModifiedDate": stamp}
                self.contacts.append((contact["Id"], None, stamp, contact))
            if customer := self.shop.get("customers", 7000000000 + customer_id):
                customer |= {"phone": f"+{cc} {a} {b} {c}", "updated_at": stamp}
                self.shop_customers.append((customer["id"], None, stamp, customer))
        self.erp.write("UPDATE {t}customers SET phone = ?, updated_at = ? WHERE customer_id = ?", erp_phones)
        self.counts["erp.customers"]["changed"] = len(erp_phones)

    def bill(
        self, order_id: int, order_number: str, customer_id: int, total: Decimal, order_date: dt.date
    ) -> None:
        """A paid invoice for the order, its payment, and the payment's settlement line."""
        cents = int((total * 100).to_integral_value(ROUND_HALF_UP))
        inv, pay, stamp = f"in_{order_id:010d}", f"py_{order_id:010d}", self.stamp
        email, amount, at = self.customers[customer_id][0], cents / 100, qbo_time(stamp)
        usd = {"value": "USD", "name": "United States Dollar"}
        customer = {"value": str(customer_id), "name": email}
        meta = {"CreateTime": at, "LastUpdatedTime": at}
        self.invoices.append((inv, None, stamp, {
            "Id": inv, "SyncToken": "0", "domain": "QBO", "sparse": False, "DocNumber": f"INV-{order_id:010d}",
            "TxnDate": str(order_date + dt.timedelta(days=1)), "CurrencyRef": usd, "CustomerRef": customer,
            "BillEmail": {"Address": email},
            "CustomField": [{"DefinitionId": "1", "Name": ORDER_REF, "Type": "StringType", "StringValue": order_number}],
            "Line": [{"Id": "1", "LineNum": 1, "Amount": amount, "DetailType": "SalesItemLineDetail",
                      "SalesItemLineDetail": {"ItemRef": {"value": "1", "name": "Goods"}, "Qty": 1}}],
            "TotalAmt": amount, "Balance": 0.0, "MetaData": meta}))  # fmt: skip
        method = order_id % 3
        self.payments.append((pay, None, stamp, {
            "Id": pay, "SyncToken": "0", "domain": "QBO", "sparse": False, "TxnDate": stamp[:10],
            "TotalAmt": amount, "UnappliedAmt": 0.0, "CurrencyRef": usd, "CustomerRef": customer,
            "PaymentMethodRef": {"value": str(1 + method), "name": ["card", "sepa_debit", "bank_transfer"][method]},
            "Line": [{"Amount": amount, "LinkedTxn": [{"TxnId": inv, "TxnType": "Invoice"}]}],
            "MetaData": meta}))  # fmt: skip
        fee, suffix = round(cents * 0.029 + 30), f"{order_id:010d}"
        self.settlement.append({"balance_transaction_id": f"txn_{suffix}", "created_utc": stamp[:10] + " " + stamp[11:19],
                                "currency": "usd", "gross": f"{cents / 100:.2f}", "fee": f"{fee / 100:.2f}",
                                "net": f"{(cents - fee) / 100:.2f}", "reporting_category": "charge",
                                "source_id": f"ch_{suffix}", "customer_email": email, "charge_id": f"ch_{suffix}",
                                "payment_intent_id": f"pi_{suffix}", "invoice_id": inv,
                                "payment_metadata[payment_id]": pay})  # fmt: skip

    def save(self) -> None:
        """Commit the ERP, then write what the tick collected to the CRM, shop and billing stores."""
        self.erp.con.commit()
        self.crm.put("accounts", self.accounts)
        self.crm.put("contacts", self.contacts)
        self.shop.put("orders", self.shop_orders)
        tick_deletes.save_shop_deletions(self)
        self.shop.put("customers", self.shop_customers)
        self.billing.put("invoices", self.invoices)
        self.billing.put("payments", self.payments)
        self.counts["crm.accounts"]["changed"] = len(self.accounts)
        self.counts["crm.contacts"]["changed"] = len(self.contacts)
        self.counts["shop.customers"]["changed"] = len(self.shop_customers)
        self.counts["billing.invoices"]["new"] = len(self.invoices)
        self.counts["billing.payments"]["new"] = len(self.payments)
        self.counts["payments.settlement"]["new"] = len(self.settlement)

    def close(self) -> None:
        self.erp.con.close()
        for store in (self.shop, self.billing, self.crm):
            store.close()


def _order_lines(rng: random.Random, order_id: int, products: list[tuple]) -> tuple[list[tuple], Decimal]:
    """One to seven random lines of a new order, and the order's total.

    A line is `(order_id, line_number, product_id, sku, quantity, price, discount, tax, amount)`.
    """
    lines, total = [], Decimal(0)
    for line_number in range(1, rng.randint(1, 7) + 1):
        product_id, sku, price = rng.choice(products)
        price = Decimal(str(price)).quantize(CENT)
        quantity = rng.randint(1, 50)
        discount, tax = Decimal(rng.randint(0, 10)) / 100, Decimal(rng.randint(0, 8)) / 100
        amount = (price * quantity * (1 - discount) * (1 + tax)).quantize(CENT, ROUND_HALF_UP)
        total += amount
        lines.append((order_id, line_number, product_id, sku, quantity, price, discount, tax, amount))
    return lines, total


def _write_settlement_file(home: Path, info: dict, tick: Tick) -> list[Path]:
    """The processor's settlement file of the tick's payments, dated the tick's day (a processor
    reports the day it settled; a report dated ahead of its day is refused by the hub's contract)."""
    if not tick.settlement:
        return []
    day = tick.now.date()
    payout = {
        "automatic_payout_id": f"po_{day:%Y%m%d}t{tick.number}",
        "automatic_payout_effective_at": f"{day} 00:00:00",
    }
    lines = pa.Table.from_pylist([{**payout, **s} for s in tick.settlement])
    return write_settlements(lines, home / "landing" / "payments", suffix=f"_tick{tick.number}")


def _count_in_truth(truth: dict, tick: Tick) -> None:
    """Add the tick's new records to the truth's counts and to the canonical rows the hub should end with."""
    for name, c in tick.counts.items():
        truth["counts"][name] = truth["counts"].get(name, 0) + c["new"]
    truth["counts"]["shop.order_line_items"] += sum(
        len(w[3]["line_items"]) for w in tick.shop_orders[: tick.counts["shop.orders"]["new"]]
    )
    for table, name in [("canonical.sales_order", "erp.sales_orders"), ("canonical.invoice", "billing.invoices"),
                        ("canonical.payment", "billing.payments")]:  # fmt: skip
        truth["expected"][table] += tick.counts[name]["new"]


def shop_order(
    order_id: int, customer: dict, total: Decimal, fulfilled: bool, lines: list, stamp: str
) -> tuple:
    """A new web order as the shop stores it (money as strings, line items nested)."""
    shop_id = 4500000000 + order_id
    body = {
        "id": shop_id, "name": f"#{order_id + 1000}", "email": customer["email"], "created_at": stamp,
        "updated_at": stamp, "currency": "USD", "total_price": f"{total:.2f}",
        "financial_status": "paid" if fulfilled else "pending", "fulfillment_status": "fulfilled" if fulfilled else None,
        "customer": {k: customer[k] for k in ("id", "email", "first_name", "last_name", "phone")},
        "line_items": [{"id": shop_id * 100 + n, "sku": sku, "quantity": q, "price": f"{u:.2f}",
                        "total_discount": f"{(u * q * d).quantize(CENT, ROUND_HALF_UP):.2f}",
                        "line_total": f"{a:.2f}"} for _, n, _, sku, q, u, d, _, a in lines],
    }  # fmt: skip
    return (shop_id, None, stamp, body)
