import pytest
from pydantic import ValidationError

from ultramarket.services.user import schemas as s
from ultramarket.services.user.iso import COUNTRIES, CURRENCIES

ADDRESS = {
    "first_name": "A",
    "last_name": "B",
    "line1": "1 Road",
    "city": "Tashkent",
    "country": "uz",
}


def test_iso_lists_are_complete_enough():
    assert len(COUNTRIES) == 249
    assert {"US", "GB", "UZ", "DE", "SS", "XK"} - COUNTRIES == {"XK"}  # XK is user-assigned
    assert {"USD", "EUR", "UZS", "JPY"} <= CURRENCIES
    assert "XXX" not in CURRENCIES


def test_country_is_normalised_and_checked():
    assert s.AddressCreate.model_validate(ADDRESS).country == "UZ"
    for bad in ("XX", "UZB", "", "U1", 12):
        with pytest.raises(ValidationError):
            s.AddressCreate.model_validate({**ADDRESS, "country": bad})


def test_profile_update_allows_only_own_fields():
    assert s.ProfileUpdate.model_validate({"first_name": " Ada "}).model_dump(
        exclude_unset=True
    ) == {"first_name": "Ada"}
    for field in ("role", "email", "status", "verified", "id", "last_login_at"):
        with pytest.raises(ValidationError):
            s.ProfileUpdate.model_validate({field: "x"})


def test_currency_and_language():
    assert s.PreferencesUpdate.model_validate({"currency": "eur"}).currency == "EUR"
    assert s.PreferencesUpdate.model_validate({"language": "en-GB"}).language == "en-GB"
    for bad in ({"currency": "EURO"}, {"currency": "ABC"}, {"language": "e"}):
        with pytest.raises(ValidationError):
            s.PreferencesUpdate.model_validate(bad)
