"""Identity: signed tokens carried in nameko context data, and the caller they name.

A token is an HS256 JWT (HMAC-SHA256 with the secret ``AUTH_SECRET``, loaded by
``shared.secrets``: no default outside development mode) holding ``sub`` (who,
never empty), ``role``, ``org`` (organisation scope, optional) and ``exp``.
Portals pass it as the context data key ``auth_token``.
"""
from __future__ import annotations

import functools
import re
import time
from uuid import UUID
from dataclasses import dataclass

import jwt
from nameko.extensions import DependencyProvider

from shared.entrypoints import Mutation
from shared.errors import Forbidden, Unauthenticated
from shared.secrets import AUTH_SECRET, load_secret

CONTEXT_KEY = "auth_token"

ORG_ADMIN = "org_admin"  # 组织部
COLLEGE_SECRETARY = "college_secretary"  # 二级学院党组织书记
BRANCH_SECRETARY = "branch_secretary"  # 党支部书记
MEMBER = "member"  # 党员
AUDITOR = "auditor"  # 纪委办
OPS = "ops"  # 信息资源中心
DEPARTMENT_STAFF = "department_staff"  # 职能部门 staff; ``org`` = the department code
ROLES = (ORG_ADMIN, COLLEGE_SECRETARY, BRANCH_SECRETARY, MEMBER, AUDITOR, OPS, DEPARTMENT_STAFF)
# A department_staff token's org: a department code (organizations' list_departments).
DEPARTMENT_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# Roles whose token must name the organisation (a department: its code) they act for.
SCOPED_ROLES = (COLLEGE_SECRETARY, BRANCH_SECRETARY, DEPARTMENT_STAFF)
# Roles that read everything and change nothing: refused by every ``@command`` (a ``Mutation`` entrypoint).
READ_ONLY_ROLES = (AUDITOR,)


@dataclass(frozen=True)
class Caller:
    """Who is calling: subject, role and organisation scope (None = unscoped)."""

    sub: str
    role: str
    org: str | None = None

    def as_actor(self) -> dict:
        """The actor recorded on every event this caller causes."""
        actor = {"sub": self.sub, "role": self.role}
        if self.org:
            actor["org"] = self.org
        return actor

    def require_role(self, *roles: str) -> "Caller":
        if self.role not in roles:
            raise Forbidden(
                f"role '{self.role}' may not do this; allowed: {', '.join(roles)}"
            )
        return self


    def college_scope(self, college_id, what: str) -> str | None:
        """The college a college-level read is about: for a college secretary
        (二级党组织书记) its own (a college named that is not is ``Forbidden``),
        for the other roles the one named (None: the whole school)."""
        if self.role == COLLEGE_SECRETARY:
            if college_id is not None and str(college_id) != str(self.org):
                raise Forbidden(f"a college secretary reads its own college's {what}")
            return self.org
        return str(college_id) if college_id is not None else None


SYSTEM = Caller(sub="system", role=ORG_ADMIN)


def mint_token(secret: str, sub: str, role: str, org: str | None = None,
               ttl: int = 3600, now: float | None = None) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if role in SCOPED_ROLES and not org:
        raise ValueError(f"role {role!r} needs an organisation scope (--org)")
    if not sub or not str(sub).strip():
        raise ValueError("sub must not be empty")
    issued = int(now if now is not None else time.time())
    claims = {"sub": sub, "role": role, "iat": issued, "exp": issued + int(ttl)}
    if org:
        claims["org"] = str(org)
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, token: str | None) -> Caller:
    """The caller a token names, or ``Unauthenticated``.

    A token checked once is remembered (with its expiry, checked on every call):
    a portal sends the same token with every call, and each call's worker and
    call log ask for it, so the signature check and claim parsing ran two or
    more times per call. Only tokens that passed every check are remembered."""
    if not token:
        raise Unauthenticated("no token: pass a signed token as context data 'auth_token'")
    if not isinstance(token, str):
        raise Unauthenticated("token not valid: a token is text")
    caller, expires = _verified(secret, token)
    if expires <= time.time():  # as PyJWT's own check (no leeway)
        raise Unauthenticated("token expired")
    return caller


@functools.lru_cache(maxsize=4096)
def _verified(secret: str, token: str) -> tuple[Caller, float]:
    """(caller, expiry) of a token that passes every check now (the checks of
    ``verify_token``); raises otherwise (and nothing is remembered)."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"],
                            options={"require": ["sub", "role", "exp"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired")
    except jwt.InvalidSignatureError:
        raise Unauthenticated("token signature is not valid")
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"token not valid: {exc}")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise Unauthenticated("token names no subject (sub is empty)")
    role = claims.get("role")
    if role not in ROLES:
        raise Unauthenticated(f"token names an unknown role {role!r}")
    if len(sub) > 200 or not sub.isprintable():
        raise Unauthenticated("token's sub must be printable text of at most 200 characters")
    if role in SCOPED_ROLES and not claims.get("org"):
        raise Unauthenticated(f"token for role {role!r} has no organisation scope")
    org = claims.get("org")
    if org is not None and role == DEPARTMENT_STAFF:
        if not isinstance(org, str) or not DEPARTMENT_CODE.match(org):
            raise Unauthenticated("a department_staff token's org must be a department code "
                                  "(e.g. publicity)")
    elif org is not None:
        try:
            org = str(UUID(str(org)))
        except ValueError:
            raise Unauthenticated("token's org must be an organisation id") from None
    return Caller(sub=sub, role=role, org=org), float(claims["exp"])


# ``Mutation`` (shared.entrypoints) is the entrypoint of every method that
# changes something; ``shared.entrypoints.command`` declares one.


class CallerResolver:
    """What a worker gets: resolves the caller from its context data on demand."""

    def __init__(self, secret: str, token: str | None, mutating: bool = False):
        self._secret = secret
        self._token = token
        self._mutating = mutating

    def __call__(self) -> Caller:
        caller = verify_token(self._secret, self._token)
        if self._mutating and caller.role in READ_ONLY_ROLES:
            raise Forbidden(f"role '{caller.role}' (纪委办) reads everything and changes "
                            "nothing: this call changes records")
        return caller


class Identity(DependencyProvider):
    """Gives each worker ``self.caller()``, which verifies the token or raises
    ``Unauthenticated`` (and, for a ``@command``, refuses read-only roles).
    Authorisation (role and scope) is otherwise the application's."""

    def setup(self):
        self.secret = load_secret(AUTH_SECRET, self.container.config)

    def get_dependency(self, worker_ctx):
        return CallerResolver(self.secret, worker_ctx.context_data.get(CONTEXT_KEY),
                              mutating=isinstance(worker_ctx.entrypoint, Mutation))
