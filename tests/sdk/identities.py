"""Tenant, vaults and identities of tests/sdk/seed.yaml, shared by conftest and the tests.

Client secrets here are test-only values of a throwaway emulator, not credentials.
"""

TENANT_ID = "00000000-0000-0000-0000-0000000000aa"
VAULT = "sdk"
OTHER_VAULT = "other"
FIRST_PUT_VAULT = "first-put"
FIRST_POST_VAULT = "first-post"

WORKLOAD_CLIENT_ID = "11111111-1111-1111-1111-111111111111"
WORKLOAD_SUBJECT = "system:serviceaccount:sdk:app"
SP_CLIENT_ID = "22222222-2222-2222-2222-222222222222"
SP_CLIENT_SECRET = "sdk-suite-client-secret"
USER_ASSIGNED_CLIENT_ID = "33333333-3333-3333-3333-333333333333"
SYSTEM_ASSIGNED_CLIENT_ID = "44444444-4444-4444-4444-444444444444"
LIMITED_CLIENT_ID = "55555555-5555-5555-5555-555555555555"
LIMITED_CLIENT_SECRET = "sdk-suite-limited-secret"
UNKNOWN_CLIENT_ID = "99999999-9999-9999-9999-999999999999"
