"""Kubernetes facts: the user names and groups the API server gives ServiceAccounts.

k8s.io/apiserver pkg/authentication/serviceaccount/util.go (ServiceAccountUsernamePrefix,
ServiceAccountGroupPrefix, AllServiceAccountsGroup, MakeUsername) and pkg/authentication/user/
user.go (AllAuthenticated). A SubjectAccessReview is judged with the groups it is given, not the
ones the authenticator would add, so a caller asking about a ServiceAccount passes them itself.
"""

from __future__ import annotations

from typing import Final

RBAC_GROUP: Final = "rbac.authorization.k8s.io"
SERVICE_ACCOUNT_PREFIX: Final = "system:serviceaccount:"
SERVICE_ACCOUNT_GROUP_PREFIX: Final = "system:serviceaccounts:"
ALL_SERVICE_ACCOUNTS: Final = "system:serviceaccounts"
ALL_AUTHENTICATED: Final = "system:authenticated"
# Control-plane users (system:kube-controller-manager, ...) and kube-system's controllers.
SYSTEM_USER_PREFIX: Final = "system:"
SYSTEM_NAMESPACE: Final = "kube-system"


def service_account_user(namespace: str, name: str) -> str:
    """MakeUsername: `system:serviceaccount:<namespace>:<name>`."""
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def groups_of(user: str) -> list[str]:
    """The groups the authenticator gives `user`: a ServiceAccount's three, else authenticated."""
    parts = user.split(":")
    if user.startswith(SERVICE_ACCOUNT_PREFIX) and len(parts) == 4:
        return [
            ALL_SERVICE_ACCOUNTS,
            f"{SERVICE_ACCOUNT_GROUP_PREFIX}{parts[2]}",
            ALL_AUTHENTICATED,
        ]
    return [ALL_AUTHENTICATED]
