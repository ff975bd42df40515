"""The canonical model: the business's agreed shape of each entity, independent of any system.

`MODELS` maps each canonical table name to its pandera model. Imports only pandera and pandas.
"""

from canonical.customer import Customer
from canonical.customer_xref import CustomerXref
from canonical.invoice import Invoice
from canonical.money import MONEY_TOLERANCE
from canonical.order_line import OrderLine
from canonical.payment import Payment
from canonical.product import Product
from canonical.sales_order import SalesOrder

MODELS = {
    "customer": Customer,
    "customer_xref": CustomerXref,
    "product": Product,
    "sales_order": SalesOrder,
    "order_line": OrderLine,
    "invoice": Invoice,
    "payment": Payment,
}

__all__ = [
    "MODELS",
    "MONEY_TOLERANCE",
    "Customer",
    "CustomerXref",
    "Invoice",
    "OrderLine",
    "Payment",
    "Product",
    "SalesOrder",
]
