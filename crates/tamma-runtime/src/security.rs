//! The `security` section: typed and validated now; enforcement comes with the security work. Until
//! then a feature this version does not carry out (authentication, authorization, encryption at rest)
//! cannot be switched on: validation refuses it, naming the key, rather than let a node run without a
//! protection its operator believes it has.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tamma_core::{DurationMs, Problem, Secret, Validate, join_path};

/// `security`: encryption, authentication, authorization and audit settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Encryption of data at rest.
    pub encryption: EncryptionConfig,
    /// Who may call the node.
    pub authentication: AuthenticationConfig,
    /// What callers may do.
    pub authorization: AuthorizationConfig,
    /// The audit trail.
    pub audit: AuditConfig,
}

/// `security.encryption`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// Whether data at rest is encrypted. Not implemented yet: `true` is refused (encrypt the volume).
    pub enabled: bool,
    /// The cipher; only `aes-256-gcm` is supported.
    pub algorithm: String,
    /// Where the key comes from.
    pub key_source: KeySource,
    /// Key rotation.
    pub key_rotation: KeyRotationConfig,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            algorithm: "aes-256-gcm".into(),
            key_source: KeySource::Environment,
            key_rotation: KeyRotationConfig::default(),
        }
    }
}

/// Where encryption keys come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// An environment variable.
    Environment,
    /// A file.
    File,
    /// A key management service.
    Kms,
}

/// `security.encryption.keyRotation`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct KeyRotationConfig {
    /// Whether keys rotate.
    pub enabled: bool,
    /// How often a new key is made (milliseconds; default 24 h).
    pub interval: DurationMs,
    /// How many days old keys are kept to decrypt older data.
    pub retention: u32,
}

impl Default for KeyRotationConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: DurationMs::from_millis(86_400_000),
            retention: 7,
        }
    }
}

/// `security.authentication`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuthenticationConfig {
    /// Whether requests must authenticate. Not enforced yet: `true` is refused (use a proxy).
    pub enabled: bool,
    /// Accepted methods, as `{type, config}`.
    pub methods: Vec<AuthMethod>,
    /// JWT settings.
    pub jwt: JwtConfig,
    /// OAuth settings.
    pub oauth: OAuthConfig,
}

/// An authentication method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "config", rename_all = "snake_case")]
pub enum AuthMethod {
    /// Bearer JWTs checked with `security.authentication.jwt`.
    Jwt(JwtMethodConfig),
    /// OAuth 2 with the providers of `security.authentication.oauth`.
    Oauth(OAuthMethodConfig),
    /// Static API keys.
    ApiKey(ApiKeyMethodConfig),
    /// HTTP basic authentication.
    Basic(BasicMethodConfig),
}

/// Options of the `jwt` method.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct JwtMethodConfig {
    /// Clock skew tolerated when checking `exp`/`nbf`.
    pub leeway: DurationMs,
}

/// Options of the `oauth` method.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OAuthMethodConfig {
    /// Names of the providers accepted (all when empty).
    pub providers: Vec<String>,
}

/// Options of the `api_key` method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ApiKeyMethodConfig {
    /// The header carrying the key.
    pub header: String,
    /// Accepted keys (secrets).
    pub keys: Vec<Secret>,
}

impl Default for ApiKeyMethodConfig {
    fn default() -> Self {
        Self {
            header: "x-api-key".into(),
            keys: Vec::new(),
        }
    }
}

/// Options of the `basic` method.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BasicMethodConfig {
    /// The realm announced in `WWW-Authenticate`.
    pub realm: String,
}

impl Default for BasicMethodConfig {
    fn default() -> Self {
        Self {
            realm: "tamma".into(),
        }
    }
}

/// `security.authentication.jwt`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct JwtConfig {
    /// The signing secret (HS256). Give it as `TAMMA_SECURITY__AUTHENTICATION__JWT__SECRET`, its `_FILE`
    /// variant, or `secretFile` in the file; never commit it.
    pub secret: Secret,
    /// Token lifetime, as the seed writes it (`"1h"`, `"30m"`).
    pub expires_in: String,
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            secret: Secret::default(),
            expires_in: "1h".into(),
            issuer: "tamma".into(),
            audience: "tamma".into(),
        }
    }
}

/// `security.authentication.oauth`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OAuthConfig {
    /// Identity providers.
    pub providers: Vec<OAuthProvider>,
}

/// One OAuth provider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OAuthProvider {
    /// Provider name.
    pub name: String,
    /// Client id.
    pub client_id: String,
    /// Client secret (never printed; `clientSecretFile` accepted).
    pub client_secret: Secret,
    /// Redirect URI registered with the provider.
    pub redirect_uri: String,
    /// Scopes requested.
    pub scopes: Vec<String>,
}

/// `security.authorization`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuthorizationConfig {
    /// Whether authorization is enforced. Not enforced yet: `true` is refused.
    pub enabled: bool,
    /// Role-based rules.
    pub rbac: RbacConfig,
    /// Attribute-based rules.
    pub abac: AbacConfig,
}

/// `security.authorization.rbac`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RbacConfig {
    /// Whether roles are enforced. Not enforced yet: `true` is refused.
    pub enabled: bool,
    /// Roles and the permissions they grant.
    pub roles: Vec<Role>,
    /// Permissions: a name for actions on a resource.
    pub permissions: Vec<Permission>,
}

/// A role.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Role {
    /// Role name.
    pub name: String,
    /// Names of permissions (from `rbac.permissions`).
    pub permissions: Vec<String>,
}

/// A permission.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Permission {
    /// Permission name.
    pub name: String,
    /// Resource (`events`, `config`, `workers`).
    pub resource: String,
    /// Actions (`read`, `write`, `admin`).
    pub actions: Vec<String>,
}

/// `security.authorization.abac`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AbacConfig {
    /// Whether policies are enforced. Not enforced yet: `true` is refused.
    pub enabled: bool,
    /// Policies.
    pub policies: Vec<Policy>,
}

/// An ABAC policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// Policy name.
    pub name: String,
    /// `allow` or `deny`.
    pub effect: Effect,
    /// All must hold for the policy to apply.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// A policy's effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Allow.
    Allow,
    /// Deny.
    Deny,
}

/// A condition on an attribute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// Attribute path (`user.role`).
    pub attribute: String,
    /// Operator (`eq`, `ne`, `in`, `contains`, `gt`, `lt`).
    pub operator: String,
    /// Value compared with.
    pub value: serde_json::Value,
}

/// `security.audit`: an export of the audit trail, not built yet; these settings are validated and
/// kept for it. The node's own trail (`NODE.*` and `CONFIG.*` events with `eventSource: system`) is
/// always recorded in the event store, kept as long as `events.retentionDays` says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Whether the audit export is kept (the trail in the event store is recorded either way).
    pub enabled: bool,
    /// Event type patterns audited (`*`, `CONFIG.*`).
    pub events: Vec<String>,
    /// Days audit records are kept.
    pub retention: u32,
    /// Export format.
    pub format: AuditFormat,
    /// Where audit records go.
    pub storage: AuditStorage,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            events: vec!["*".into()],
            retention: 30,
            format: AuditFormat::Json,
            storage: AuditStorage::File(AuditFileConfig::default()),
        }
    }
}

/// Audit export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditFormat {
    /// JSON lines.
    Json,
    /// CSV.
    Csv,
}

/// Where audit records are stored, as `{type, config}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "config", rename_all = "snake_case")]
pub enum AuditStorage {
    /// A file.
    File(AuditFileConfig),
    /// The event store's database.
    Database(AuditDatabaseConfig),
    /// An S3 bucket.
    S3(AuditS3Config),
}

/// Options of audit `file` storage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuditFileConfig {
    /// File path; relative paths are under `dataDir` (default `audit/audit.log`, where the seed had
    /// `/var/log/tamma/audit.log`).
    pub path: String,
}

impl Default for AuditFileConfig {
    fn default() -> Self {
        Self {
            path: "audit/audit.log".into(),
        }
    }
}

/// Options of audit `database` storage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuditDatabaseConfig {}

/// Options of audit `s3` storage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuditS3Config {
    /// Bucket.
    pub bucket: String,
    /// Region.
    pub region: String,
    /// Key prefix.
    pub prefix: String,
}

/// Why a node refuses a security feature this version does not enforce: one that is switched on
/// but not carried out is worse than one that is off, because the operator believes it holds.
const NOT_ENFORCED: &str = "is not enforced by this version of tamma: a node started with it would";

impl SecurityConfig {
    /// The features switched on that this version does not carry out, each with the path that
    /// switches it on and what the node would really do: part of [`Validate`], so `tamma config
    /// check` reports them, `tamma serve` refuses to start with them and a reload that turns one on
    /// is rejected (the previous config stays).
    fn refuse_unenforced(&self, path: &str, out: &mut Vec<Problem>) {
        let authz = &self.authorization;
        let switched_on = [
            (
                self.authentication.enabled,
                "authentication.enabled",
                "authentication",
                "answer unauthenticated requests; set it to false and put the node behind an \
                 authenticating proxy (docs/security.md)",
            ),
            (
                authz.enabled,
                "authorization.enabled",
                "authorization",
                "let every caller do everything; set it to false and restrict who can reach the \
                 node (docs/security.md)",
            ),
            (
                authz.rbac.enabled,
                "authorization.rbac.enabled",
                "role-based authorization",
                "let every caller do everything; set it to false (docs/security.md)",
            ),
            (
                authz.abac.enabled,
                "authorization.abac.enabled",
                "attribute-based authorization",
                "let every caller do everything; set it to false (docs/security.md)",
            ),
            (
                self.encryption.enabled,
                "encryption.enabled",
                "encryption at rest",
                "write its events in clear; set it to false and encrypt the volume that holds \
                 dataDir (docs/security.md)",
            ),
        ];
        for (on, key, what, instead) in switched_on {
            if on {
                out.push(Problem::new(
                    sub(path, key),
                    format!("{what} {NOT_ENFORCED} {instead}"),
                ));
            }
        }
    }
}

impl Validate for SecurityConfig {
    fn validate(&self, path: &str, out: &mut Vec<Problem>) {
        self.refuse_unenforced(path, out);
        let enc = join_path(path, "encryption");
        if self.encryption.algorithm != "aes-256-gcm" {
            out.push(Problem::new(
                join_path(&enc, "algorithm"),
                format!(
                    "unsupported algorithm {:?} (only aes-256-gcm)",
                    self.encryption.algorithm
                ),
            ));
        }
        if self.encryption.key_rotation.enabled && self.encryption.key_rotation.interval.is_zero() {
            out.push(Problem::new(
                sub(&enc, "keyRotation.interval"),
                "must be positive when rotation is enabled",
            ));
        }
        let authn = join_path(path, "authentication");
        let uses_jwt = self
            .authentication
            .methods
            .iter()
            .any(|m| matches!(m, AuthMethod::Jwt(_)));
        if self.authentication.enabled && self.authentication.methods.is_empty() {
            out.push(Problem::new(
                join_path(&authn, "methods"),
                "must list at least one method when authentication is enabled",
            ));
        }
        if self.authentication.enabled
            && uses_jwt
            && self.authentication.jwt.secret.expose().len() < 32
        {
            out.push(Problem::new(
                sub(&authn, "jwt.secret"),
                "must be at least 32 bytes when the jwt method is enabled",
            ));
        }
        if self
            .authentication
            .jwt
            .expires_in
            .parse::<DurationMs>()
            .is_err()
        {
            out.push(Problem::new(
                sub(&authn, "jwt.expiresIn"),
                format!(
                    "{:?} is not a duration such as \"1h\"",
                    self.authentication.jwt.expires_in
                ),
            ));
        }
        for (i, m) in self.authentication.methods.iter().enumerate() {
            if let AuthMethod::ApiKey(k) = m
                && self.authentication.enabled
                && k.keys.is_empty()
            {
                out.push(Problem::new(
                    format!("{authn}.methods[{i}].config.keys"),
                    "must hold at least one key",
                ));
            }
        }
        let rbac = &self.authorization.rbac;
        for (i, role) in rbac.roles.iter().enumerate() {
            for p in &role.permissions {
                if !rbac.permissions.iter().any(|d| &d.name == p) {
                    out.push(Problem::new(
                        format!("{}.roles[{i}].permissions", sub(path, "authorization.rbac")),
                        format!(
                            "unknown permission {p:?} (define it in authorization.rbac.permissions)"
                        ),
                    ));
                }
            }
        }
    }
}

/// `path.rest` for a `rest` that is itself a dotted path.
fn sub(path: &str, rest: &str) -> String {
    if path.is_empty() {
        rest.to_owned()
    } else {
        format!("{path}.{rest}")
    }
}
