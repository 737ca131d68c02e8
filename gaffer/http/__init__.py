"""The HTTP API of gaffer, as an application of the Manager (Tornado on the manager's loop)."""

from gaffer.http.app import HttpHandler

__all__ = ["HttpHandler"]
