"""A Stripe-compatible test double (tests only): see :mod:`stripe_double.server`."""

from .server import EventDelivery, LoggedRequest, StripeDouble

__all__ = ["EventDelivery", "LoggedRequest", "StripeDouble"]
