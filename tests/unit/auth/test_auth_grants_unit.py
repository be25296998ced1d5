from ultramarket.core.security import Principal, Role, grants, permissions_for


def test_star_grants_everything():
    assert grants({"*"}, "order:refund")
    assert grants({"*"}, "user:write:any")
    assert grants({"*"}, "*")


def test_exact_permission_is_granted():
    assert grants({"audit:read"}, "audit:read")
    assert not grants({"audit:read"}, "audit:write")


def test_nothing_granted_by_an_empty_set():
    assert not grants(set(), "audit:read")
    assert not grants([], "*")


def test_resource_wildcard_grants_actions_on_that_resource():
    assert grants({"inventory:*"}, "inventory:read")
    assert grants({"inventory:*"}, "inventory:write:any")
    assert not grants({"inventory:*"}, "order:read")


def test_resource_wildcard_does_not_match_a_prefix_of_another_name():
    assert not grants({"order:*"}, "orders:read")
    assert not grants({"user:*"}, "username:read")


def test_scoped_wildcard():
    assert grants({"product:write:*"}, "product:write:any")
    assert not grants({"product:write:*"}, "product:read:any")


def test_own_scope_does_not_grant_any_scope():
    assert not grants({"order:read:own"}, "order:read:any")
    assert not grants({"user:read"}, "user:read:any")


def test_a_wildcard_is_not_granted_by_a_narrower_permission():
    assert not grants({"inventory:read"}, "inventory:*")
    assert not grants({"audit:read"}, "*")


def test_role_permissions():
    assert permissions_for(Role.ADMIN) == {"*"}
    assert "audit:read" in permissions_for("MANAGER")
    assert "audit:read" not in permissions_for("CUSTOMER")
    assert not grants(permissions_for("VENDOR"), "user:read:any")


def test_principal_can_and_roles():
    manager = Principal(
        subject="00000000-0000-0000-0000-000000000001",
        kind="user",
        role=Role.MANAGER,
        permissions=permissions_for(Role.MANAGER),
    )
    assert manager.can("inventory:write")
    assert not manager.can("*")
    assert manager.at_least(Role.MANAGER)
    assert not manager.at_least(Role.ADMIN)
    assert manager.owns("00000000-0000-0000-0000-000000000001")
    assert not manager.owns("00000000-0000-0000-0000-000000000002")
