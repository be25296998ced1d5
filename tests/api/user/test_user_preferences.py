from user_helpers import API, assert_error, ok

PREFS = f"{API}/me/preferences"


async def test_preferences_start_with_defaults(client, make_user):
    user = await make_user()
    data = ok(await client.get(PREFS, headers=user.headers))
    assert data["language"] == "en"
    assert data["currency"] == "USD"
    assert data["notifications"] == {"email": True, "sms": False, "push": True, "in_app": True}
    assert data["marketing_consent"] is False
    assert data["marketing_consent_at"] is None


async def test_put_preferences_changes_what_is_given(client, make_user):
    user = await make_user()
    data = ok(
        await client.put(
            PREFS,
            headers=user.headers,
            json={
                "language": "uz-Latn",
                "currency": "uzs",
                "notifications": {"sms": True, "push": False},
                "marketing_consent": True,
            },
        )
    )
    assert (data["language"], data["currency"]) == ("uz-Latn", "UZS")
    assert data["notifications"] == {"email": True, "sms": True, "push": False, "in_app": True}
    assert data["marketing_consent"] is True
    assert data["marketing_consent_at"] is not None
    assert ok(await client.get(PREFS, headers=user.headers)) == data

    again = ok(await client.put(PREFS, headers=user.headers, json={"marketing_consent": True}))
    assert again["marketing_consent_at"] == data["marketing_consent_at"]  # unchanged choice
    withdrawn = ok(await client.put(PREFS, headers=user.headers, json={"marketing_consent": False}))
    assert withdrawn["marketing_consent"] is False
    assert withdrawn["marketing_consent_at"] >= data["marketing_consent_at"]


async def test_preferences_are_validated(client, make_user):
    user = await make_user()
    for body in (
        {"currency": "XYZ"},
        {"currency": "US"},
        {"language": "not a language"},
        {"notifications": {"fax": True}},
        {"marketing_consent_at": "2020-01-01T00:00:00Z"},
        {"marketing_consent": "maybe"},
    ):
        assert_error(
            await client.put(PREFS, headers=user.headers, json=body), 422, "VALIDATION_ERROR"
        )
    assert ok(await client.get(PREFS, headers=user.headers))["currency"] == "USD"
