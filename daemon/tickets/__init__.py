"""Tickets: lifecycle decisions applied in SQL (`transitions`), where a new ticket belongs
(`placement`), and agent actions (`agent`)."""
