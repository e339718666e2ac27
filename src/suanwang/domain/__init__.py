"""Pure domain model: fleet, chips, tenants, jobs. No I/O, no third-party imports."""
