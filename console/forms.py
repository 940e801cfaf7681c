"""Form helpers shared by every app's forms."""

from django.core.exceptions import ValidationError


def add_service_errors(form, error: ValidationError):
    """Show a service's refusal on the form: on its field where the form has one, else above it."""
    if hasattr(error, "error_dict"):
        for field, messages in error.message_dict.items():
            form.add_error(field if field in form.fields else None, messages)
    else:
        form.add_error(None, error.messages)
