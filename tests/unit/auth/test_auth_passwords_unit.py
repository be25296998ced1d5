import pytest

from ultramarket.core.errors import ValidationFailed
from ultramarket.services.auth.passwords import (
    check_policy,
    common_passwords,
    hash_password,
    verify_password,
)


def test_check_policy_accepts_a_good_password():
    check_policy("Correct-Horse-42", email="someone@example.com")


def test_check_policy_rejects_short_passwords():
    with pytest.raises(ValidationFailed) as caught:
        check_policy("Ab1!xyz")
    assert caught.value.status_code == 422
    assert caught.value.code == "VALIDATION_ERROR"
    [detail] = caught.value.details
    assert detail["field"] == "password"
    assert detail["type"] == "password_policy"
    assert "8" in detail["message"]


def test_check_policy_accepts_exactly_eight_characters():
    check_policy("Qz7!vK2m")


def test_check_policy_rejects_overlong_passwords():
    with pytest.raises(ValidationFailed):
        check_policy("x9!" * 100)


def test_check_policy_rejects_common_passwords_in_any_case():
    assert "password123" in common_passwords()
    for password in ("password123", "PASSWORD123", "Password123"):
        with pytest.raises(ValidationFailed) as caught:
            check_policy(password)
        assert "common" in caught.value.details[0]["message"]


def test_check_policy_rejects_the_email_as_password():
    with pytest.raises(ValidationFailed):
        check_policy("Someone@Example.com", email="someone@example.com")


def test_check_policy_names_the_given_field():
    with pytest.raises(ValidationFailed) as caught:
        check_policy("short", field="new_password")
    assert caught.value.details[0]["field"] == "new_password"


def test_hash_and_verify_password():
    hashed = hash_password("Correct-Horse-42")
    assert hashed.startswith("$argon2id$")
    assert "Correct-Horse-42" not in hashed
    assert verify_password(hashed, "Correct-Horse-42") is True
    assert verify_password(hashed, "correct-horse-42") is False
    assert verify_password(None, "Correct-Horse-42") is False
    assert verify_password("not-a-hash", "Correct-Horse-42") is False
