"""The platform kit: no business logic lives here."""
