"""The daily import of customers, sites, end users and assets from the RMMs."""
