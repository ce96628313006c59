use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, PodSecurityContext, ResourceRequirements, SecurityContext,
    Toleration,
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults;
use crate::status::CanvasChatStatus;
use crate::validation::limits;

/// A real-time canvas chat: an autoscaled WebSocket gateway, a Redis StatefulSet for presence
/// and fan-out, and optionally an Ingress. Every field has a default, so `spec: {}` is a
/// working chat.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "canvaschat.io",
    version = "v1alpha1",
    kind = "CanvasChat",
    plural = "canvaschats",
    singular = "canvaschat",
    shortname = "cchat",
    namespaced,
    doc = "A CanvasChat is a running real-time canvas chat: gateway Deployment, Redis, Service, autoscaler and optional Ingress, managed by canvaschat-operator.",
    status = "CanvasChatStatus",
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Reason", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].reason"#),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 46").message("metadata.name must start with a letter, contain only lowercase letters, digits and '-', and be at most 46 characters: the Redis pods' controller-revision-hash label, NAME-redis-<10 character hash>, must fit in 63"),
    validation = Rule::new(REDIS_MODE_UNCHANGED).message(REDIS_MODE_MESSAGE),
)]
#[serde(rename_all = "camelCase")]
pub struct CanvasChatSpec {
    /// Stop reconciling this chat. Nothing is deleted; children keep their current state and
    /// hand edits are no longer reverted until `paused` is false again. Default: false.
    #[serde(default)]
    pub paused: bool,

    /// Secrets used to pull the gateway and Redis images from private registries.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// The WebSocket gateway Deployment, its autoscaling and disruption budget.
    #[serde(default)]
    pub gateway: GatewaySpec,

    /// The Redis StatefulSet that carries presence and cross-replica fan-out.
    #[serde(default)]
    pub redis: RedisSpec,

    /// Public exposure through an Ingress. Disabled by default: the chat is then reachable
    /// in-cluster at http://NAME-gateway.NAMESPACE.svc.
    #[serde(default)]
    pub ingress: IngressSpec,

    /// Public exposure through a Gateway API HTTPRoute `NAME` (gateway.networking.k8s.io/v1)
    /// attached to your Gateway, sending `/` to the gateway Service. Absent means no route;
    /// removing it deletes the route. Needs the Gateway API CRDs in the cluster. Default: absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<HttpRouteSpec>,

    /// Prometheus Operator integration.
    #[serde(default)]
    pub monitoring: MonitoringSpec,

    /// Who users are: `anonymous` (the name the page sends) or `jwt` (the `sub` of a token
    /// your identity provider signed). Default: anonymous.
    #[serde(default)]
    pub auth: AuthSpec,
}

/// CEL (transition): spec.redis.mode, absent meaning standalone, never changes. Written on the
/// object rather than the field so adding or removing `redis` or `mode` is covered too.
const REDIS_MODE_UNCHANGED: &str = "(has(self.spec.redis) && has(self.spec.redis.mode) ? self.spec.redis.mode : 'standalone') == (has(oldSelf.spec.redis) && has(oldSelf.spec.redis.mode) ? oldSelf.spec.redis.mode : 'standalone')";
const REDIS_MODE_MESSAGE: &str = "spec.redis.mode cannot change on an existing CanvasChat (standalone and sentinel keep their data differently); to migrate, create a new CanvasChat in the other mode and move clients to it (see the chart README, Redis)";

/// CEL: `*` (any origin) is the whole allow-list or absent, so a list never mixes it with
/// hosts it would make meaningless.
const ANY_ORIGIN_ALONE: &str = "!has(self.allowedOrigins) || !self.allowedOrigins.exists(o, o == '*') || size(self.allowedOrigins) == 1";
const ANY_ORIGIN_MESSAGE: &str = "allowedOrigins: \"*\" (any origin) must be the only entry";

/// CEL: JWT mode names exactly one key source.
const AUTH_ONE_KEY: &str = "!(has(self.mode) && self.mode == 'jwt') || (has(self.hmacSecretRef) ? 1 : 0) + (has(self.publicKeySecretRef) ? 1 : 0) + (has(self.jwksUrl) ? 1 : 0) == 1";
const AUTH_ONE_KEY_MESSAGE: &str =
    "auth.mode jwt needs exactly one key source: hmacSecretRef, publicKeySecretRef or jwksUrl";
/// CEL: JWT settings without `mode: jwt` would be silently ignored, leaving a chat anonymous
/// that its author meant to secure.
const AUTH_JWT_ONLY: &str = "(has(self.mode) && self.mode == 'jwt') || !(has(self.hmacSecretRef) || has(self.publicKeySecretRef) || has(self.jwksUrl) || has(self.audience) || has(self.issuer) || has(self.tokenUrl))";
const AUTH_JWT_ONLY_MESSAGE: &str = "auth: hmacSecretRef, publicKeySecretRef, jwksUrl, audience, issuer and tokenUrl apply only with mode: jwt; set mode: jwt, or remove them";

/// CEL: a user-supplied container security context may not ask for privileges. Mirrored by
/// `validation::unsafe_container_context`.
const SAFE_CONTAINER_CONTEXT: &str = "!has(self.securityContext) || (\
(!has(self.securityContext.privileged) || !self.securityContext.privileged) && \
(!has(self.securityContext.allowPrivilegeEscalation) || !self.securityContext.allowPrivilegeEscalation) && \
(!has(self.securityContext.capabilities) || !has(self.securityContext.capabilities.add) || size(self.securityContext.capabilities.add) == 0) && \
(!has(self.securityContext.runAsUser) || self.securityContext.runAsUser != 0) && \
(!has(self.securityContext.runAsNonRoot) || self.securityContext.runAsNonRoot) && \
(!has(self.securityContext.procMount) || self.securityContext.procMount == 'Default') && \
(!has(self.securityContext.windowsOptions) || !has(self.securityContext.windowsOptions.hostProcess) || !self.securityContext.windowsOptions.hostProcess))";
const SAFE_CONTAINER_MESSAGE: &str = "securityContext may not set privileged, allowPrivilegeEscalation, capabilities.add, runAsUser 0, runAsNonRoot false, an unmasked procMount or windowsOptions.hostProcess (see the chart README to opt out)";
/// CEL: the same for the pod-level security context.
const SAFE_POD_CONTEXT: &str = "!has(self.podSecurityContext) || (\
(!has(self.podSecurityContext.runAsUser) || self.podSecurityContext.runAsUser != 0) && \
(!has(self.podSecurityContext.runAsNonRoot) || self.podSecurityContext.runAsNonRoot) && \
(!has(self.podSecurityContext.windowsOptions) || !has(self.podSecurityContext.windowsOptions.hostProcess) || !self.podSecurityContext.windowsOptions.hostProcess))";
/// CEL: replicas fit the mode.
const REDIS_REPLICAS_RULE: &str = "!has(self.replicas) || ((has(self.mode) && self.mode == 'sentinel') ? (self.replicas >= 3 && self.replicas % 2 == 1) : self.replicas == 1)";
const REDIS_REPLICAS_MESSAGE: &str = "redis.replicas must be 1 in standalone mode, and odd and at least 3 in sentinel mode (a Sentinel majority must survive losing one pod)";
const SAFE_POD_MESSAGE: &str = "podSecurityContext may not set runAsUser 0, runAsNonRoot false or windowsOptions.hostProcess (see the chart README to opt out)";

/// How an image is pulled.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Always pull the image.
    Always,
    /// Pull only when the node does not have the image.
    #[default]
    IfNotPresent,
    /// Never pull; the image must be on the node.
    Never,
}

impl PullPolicy {
    /// The value Kubernetes expects in `imagePullPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Where pods of one component are scheduled.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Scheduling {
    /// Node labels a pod's node must carry. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Node and pod (anti-)affinity rules. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Taints the pods tolerate. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// The gateway Deployment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(SAFE_CONTAINER_CONTEXT).message(SAFE_CONTAINER_MESSAGE),
    validation = Rule::new(SAFE_POD_CONTEXT).message(SAFE_POD_MESSAGE)
)]
pub struct GatewaySpec {
    /// Gateway container image. Default: the gateway release matching the operator
    /// (ghcr.io/canvaschat/canvaschat-gateway:<operator version>, set by the operator's chart),
    /// filled in at reconcile time so an operator upgrade moves chats that do not pin one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// Image pull policy. Default: IfNotPresent.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,

    /// Fixed number of gateway pods, used only when autoscaling is disabled. Default: 2.
    #[serde(default = "defaults::gateway_replicas")]
    #[schemars(range(min = limits::MIN_REPLICAS, max = limits::MAX_REPLICAS))]
    pub replicas: i32,

    /// CPU and memory requests and limits of the gateway container.
    /// Default: requests cpu 100m / memory 128Mi, limit memory 256Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Chat behaviour, passed to the gateway as CANVASCHAT_* environment variables.
    #[serde(default)]
    pub settings: GatewaySettings,

    /// Horizontal pod autoscaling (autoscaling/v2). Enabled by default.
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,

    /// PodDisruptionBudget for the gateway pods. Enabled by default.
    #[serde(default)]
    pub pod_disruption_budget: PodDisruptionBudgetSpec,

    /// Node selector, affinity and tolerations of the gateway pods.
    #[serde(default)]
    pub scheduling: Scheduling,

    /// Extra annotations on the gateway pods (e.g. for a service mesh). Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,

    /// Pod-level security context, replacing the default as a whole. Default: non-root
    /// uid/gid 10001, RuntimeDefault seccomp. Root and host-process settings are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<PodSecurityContext>,

    /// Container security context, replacing the default as a whole. Default: non-root,
    /// read-only root filesystem, no privilege escalation, all capabilities dropped,
    /// RuntimeDefault seccomp. Privileged, added capabilities, privilege escalation and root
    /// are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        Self {
            image: None,
            image_pull_policy: PullPolicy::default(),
            replicas: defaults::gateway_replicas(),
            resources: None,
            settings: GatewaySettings::default(),
            autoscaling: AutoscalingSpec::default(),
            pod_disruption_budget: PodDisruptionBudgetSpec::default(),
            scheduling: Scheduling::default(),
            pod_annotations: BTreeMap::new(),
            pod_security_context: None,
            security_context: None,
        }
    }
}

/// Log verbosity of the gateway (becomes RUST_LOG).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything, including per-frame tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    #[default]
    Info,
    /// Only warnings and errors.
    Warn,
    /// Only errors.
    Error,
}

impl LogLevel {
    /// The RUST_LOG value for this level.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Gateway behaviour. Each field maps to one CANVASCHAT_* environment variable.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.presenceTtlSeconds) ? self.presenceTtlSeconds : 300) > (has(self.presenceHeartbeatSeconds) ? self.presenceHeartbeatSeconds : 60)").message("presenceTtlSeconds (default 300) must be greater than presenceHeartbeatSeconds (default 60), otherwise live users expire between heartbeats"),
    validation = Rule::new(ANY_ORIGIN_ALONE).message(ANY_ORIGIN_MESSAGE)
)]
pub struct GatewaySettings {
    /// Largest accepted client frame in bytes (CANVASCHAT_MAX_MESSAGE_BYTES). Default: 4096.
    #[serde(default = "defaults::max_message_bytes")]
    #[schemars(range(min = limits::MIN_MESSAGE_BYTES, max = limits::MAX_MESSAGE_BYTES))]
    pub max_message_bytes: i32,

    /// Chat messages per user per minute, across all replicas
    /// (CANVASCHAT_RATE_LIMIT_PER_MINUTE). Default: 100.
    #[serde(default = "defaults::rate_limit_per_minute")]
    #[schemars(range(min = 1, max = limits::MAX_RATE_LIMIT_PER_MINUTE))]
    pub rate_limit_per_minute: i32,

    /// How often a live connection refreshes its presence, in seconds
    /// (CANVASCHAT_PRESENCE_HEARTBEAT_SECONDS). Default: 60.
    #[serde(default = "defaults::presence_heartbeat_seconds")]
    #[schemars(range(min = 1, max = limits::MAX_PRESENCE_SECONDS))]
    pub presence_heartbeat_seconds: i32,

    /// Presence of a connection that stopped refreshing expires after this many seconds
    /// (CANVASCHAT_PRESENCE_TTL_SECONDS). Must exceed presenceHeartbeatSeconds. Default: 300.
    #[serde(default = "defaults::presence_ttl_seconds")]
    #[schemars(range(min = 2, max = limits::MAX_PRESENCE_SECONDS))]
    pub presence_ttl_seconds: i32,

    /// Gateway log level (RUST_LOG). Logs are JSON. Default: info.
    #[serde(default)]
    pub log_level: LogLevel,

    /// Origins allowed to open the WebSocket (CANVASCHAT_ALLOWED_ORIGINS), e.g.
    /// https://chat.example.com; `["*"]` allows any origin. Empty (the default) means the
    /// chat's own hosts: https://HOST for the Ingress host and every HTTPRoute host name, plus
    /// http://HOST where the operator cannot tell TLS is in front (an Ingress without
    /// tlsSecretName, HTTPRoutes); with no host at all, any origin. Default: empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = limits::MAX_ALLOWED_ORIGINS), inner(length(min = 1, max = 256), regex(pattern = r"^(\*|https?://[^,\s]+)$")))]
    pub allowed_origins: Vec<String>,

    /// Seconds the gateway drains connections after SIGTERM
    /// (CANVASCHAT_SHUTDOWN_GRACE_SECONDS). The pod's terminationGracePeriodSeconds is this
    /// plus 10. Default: 25.
    #[serde(default = "defaults::shutdown_grace_seconds")]
    #[schemars(range(min = 0, max = limits::MAX_SHUTDOWN_GRACE_SECONDS))]
    pub shutdown_grace_seconds: i32,

    /// Cap on WebSocket connections per gateway process (CANVASCHAT_MAX_CONNECTIONS).
    /// Default: 10000.
    #[serde(default = "defaults::max_connections")]
    #[schemars(range(min = 1, max = limits::MAX_CONNECTIONS))]
    pub max_connections: i32,

    /// Move WebSocket connections off a gateway pod holding more than its share, so pods the
    /// autoscaler adds get load (CANVASCHAT_REBALANCE): it closes a few connections with code
    /// 4000 and the page reconnects at once to another pod without losing messages.
    /// Default: true.
    #[serde(default = "defaults::enabled")]
    pub rebalance: bool,

    /// How far above the mean connection count of the gateway pods one may be before it
    /// moves connections, as a fraction: 0.2 = 20 % above the mean
    /// (CANVASCHAT_REBALANCE_TOLERANCE, 0.05 .. 10). Default: 0.2.
    #[serde(default = "defaults::rebalance_tolerance")]
    #[schemars(range(min = limits::MIN_REBALANCE_TOLERANCE, max = limits::MAX_REBALANCE_TOLERANCE))]
    pub rebalance_tolerance: f64,

    /// Most connections one gateway pod closes per second to rebalance
    /// (CANVASCHAT_REBALANCE_RATE). Default: 5.
    #[serde(default = "defaults::rebalance_rate")]
    #[schemars(range(min = 1, max = limits::MAX_REBALANCE_RATE))]
    pub rebalance_rate: i32,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            max_message_bytes: defaults::max_message_bytes(),
            rate_limit_per_minute: defaults::rate_limit_per_minute(),
            presence_heartbeat_seconds: defaults::presence_heartbeat_seconds(),
            presence_ttl_seconds: defaults::presence_ttl_seconds(),
            log_level: LogLevel::default(),
            allowed_origins: Vec::new(),
            shutdown_grace_seconds: defaults::shutdown_grace_seconds(),
            max_connections: defaults::max_connections(),
            rebalance: true,
            rebalance_tolerance: defaults::rebalance_tolerance(),
            rebalance_rate: defaults::rebalance_rate(),
        }
    }
}

/// Horizontal pod autoscaling of the gateway. While enabled, the Deployment carries no
/// `replicas` field so the HPA alone decides the pod count.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.minReplicas) ? self.minReplicas : 2) <= (has(self.maxReplicas) ? self.maxReplicas : 10)").message("minReplicas (default 2) must be less than or equal to maxReplicas (default 10)")
)]
pub struct AutoscalingSpec {
    /// Create a HorizontalPodAutoscaler. When false, gateway.replicas is used. Default: true.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,

    /// Lowest number of gateway pods. Default: 2.
    #[serde(default = "defaults::min_replicas")]
    #[schemars(range(min = limits::MIN_REPLICAS, max = limits::MAX_REPLICAS))]
    pub min_replicas: i32,

    /// Highest number of gateway pods. Default: 10.
    #[serde(default = "defaults::max_replicas")]
    #[schemars(range(min = limits::MIN_REPLICAS, max = limits::MAX_REPLICAS))]
    pub max_replicas: i32,

    /// Target average CPU utilisation, in percent of the CPU request. Default: 70.
    #[serde(
        default = "defaults::target_cpu",
        rename = "targetCPUUtilizationPercentage"
    )]
    #[schemars(range(min = 1, max = limits::MAX_UTILIZATION_PERCENT))]
    pub target_cpu_utilization_percentage: i32,

    /// Target average memory utilisation, in percent of the memory request. Default: 80.
    #[serde(default = "defaults::target_memory")]
    #[schemars(range(min = 1, max = limits::MAX_UTILIZATION_PERCENT))]
    pub target_memory_utilization_percentage: i32,

    /// Also scale on WebSocket connections: target average of the gateway's
    /// `canvaschat_connections_active` per pod (a `Pods` metric). Needs a custom metrics
    /// adapter serving it (prometheus-adapter or KEDA, see the chart README). Default: unset,
    /// CPU and memory only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = limits::MAX_CONNECTIONS))]
    pub connections_per_pod: Option<i32>,

    /// How fast to add pods. Default: no stabilisation window; per 15 s at most +100% or
    /// +4 pods, whichever is more.
    #[serde(default = "defaults::scale_up")]
    pub scale_up: ScalingBehavior,

    /// How fast to remove pods. Default: 300 s stabilisation window; per 60 s at most -50%
    /// or -2 pods, whichever is more.
    #[serde(default = "defaults::scale_down")]
    pub scale_down: ScalingBehavior,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            min_replicas: defaults::min_replicas(),
            max_replicas: defaults::max_replicas(),
            target_cpu_utilization_percentage: defaults::target_cpu(),
            target_memory_utilization_percentage: defaults::target_memory(),
            connections_per_pod: None,
            scale_up: defaults::scale_up(),
            scale_down: defaults::scale_down(),
        }
    }
}

/// Scaling rate limits for one direction. Within each period the larger of the percent and
/// pods policies applies.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScalingBehavior {
    /// Seconds of past recommendations considered before scaling in this direction.
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_window_seconds: i32,
    /// Length of one rate-limit period in seconds.
    #[schemars(range(min = 1, max = 1800))]
    pub period_seconds: i32,
    /// At most this percentage of the current pods per period.
    #[schemars(range(min = 1, max = 1000))]
    pub percent: i32,
    /// At most this many pods per period.
    #[schemars(range(min = 1, max = 1000))]
    pub pods: i32,
}

/// PodDisruptionBudget of the gateway.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodDisruptionBudgetSpec {
    /// Create a PodDisruptionBudget. Default: true.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// Gateway pods that voluntary disruptions (node drains) may take down at once.
    /// Default: 1.
    #[serde(default = "defaults::pdb_max_unavailable")]
    #[schemars(range(min = 1, max = limits::MAX_REPLICAS))]
    pub max_unavailable: i32,
}

impl Default for PodDisruptionBudgetSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            max_unavailable: defaults::pdb_max_unavailable(),
        }
    }
}

/// How Redis is deployed.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One Redis pod. When it restarts the chat is down until it is back.
    #[default]
    Standalone,
    /// A master, replicas and one Sentinel beside each; the Sentinels promote a replica when
    /// the master dies and the gateways follow it.
    Sentinel,
}

impl RedisMode {
    /// The value in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            RedisMode::Standalone => "standalone",
            RedisMode::Sentinel => "sentinel",
        }
    }
}

/// The Redis StatefulSet: one pod (standalone) or a master, replicas and Sentinels.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(SAFE_CONTAINER_CONTEXT).message(SAFE_CONTAINER_MESSAGE),
    validation = Rule::new(SAFE_POD_CONTEXT).message(SAFE_POD_MESSAGE),
    validation = Rule::new(REDIS_REPLICAS_RULE).message(REDIS_REPLICAS_MESSAGE)
)]
pub struct RedisSpec {
    /// `standalone` (one Redis pod) or `sentinel` (a master, replicas and Sentinels; the
    /// gateways find the master through the Sentinels and follow a failover). Fixed at
    /// creation. Default: standalone.
    #[serde(default)]
    pub mode: RedisMode,

    /// Redis pods. Standalone: 1. Sentinel: an odd number, at least 3, each with a Sentinel
    /// beside it. Default: 1 (standalone), 3 (sentinel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = limits::MAX_REDIS_REPLICAS))]
    pub replicas: Option<i32>,

    /// Redis `maxmemory`, e.g. 200mb. At the limit Redis refuses writes (noeviction) rather
    /// than drop presence or history keys early. Default: three quarters of the Redis
    /// container's memory limit, none without a limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[1-9][0-9]{0,8}(kb|mb|gb)$"))]
    pub max_memory: Option<String>,

    /// Redis container image. Default: redis:7.4-alpine (filled in at reconcile time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// Image pull policy. Default: IfNotPresent.
    #[serde(default)]
    pub image_pull_policy: PullPolicy,

    /// CPU and memory requests and limits of the Redis container.
    /// Default: requests cpu 50m / memory 64Mi, limit memory 256Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Append-only-file persistence (appendonly yes). Default: true.
    #[serde(default = "defaults::enabled")]
    pub append_only: bool,

    /// Persistent volume for /data.
    #[serde(default)]
    pub storage: StorageSpec,

    /// Secret holding the Redis password. It must be in the CanvasChat's namespace; Redis reads
    /// it through its config on stdin and the gateway as CANVASCHAT_REDIS_PASSWORD, never on a
    /// command line. Changing the Secret's contents rolls both. Default: the operator creates
    /// Secret NAME-redis-auth with a random password (key `password`) and keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,

    /// Node selector, affinity and tolerations of the Redis pod.
    #[serde(default)]
    pub scheduling: Scheduling,

    /// Pod-level security context, replacing the default as a whole. Default: non-root
    /// uid 999 / gid 1000 (the redis user of the official image), fsGroup 1000,
    /// RuntimeDefault seccomp. Root and host-process settings are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<PodSecurityContext>,

    /// Container security context, replacing the default as a whole. Default: non-root,
    /// read-only root filesystem, no privilege escalation, all capabilities dropped,
    /// RuntimeDefault seccomp. Privileged, added capabilities, privilege escalation and root
    /// are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
}

impl RedisSpec {
    /// The Redis pod count: the spec's, else the mode's default.
    pub fn pod_count(&self) -> i32 {
        self.replicas.unwrap_or(match self.mode {
            RedisMode::Standalone => 1,
            RedisMode::Sentinel => defaults::SENTINEL_REDIS_REPLICAS,
        })
    }
}

impl Default for RedisSpec {
    fn default() -> Self {
        Self {
            mode: RedisMode::default(),
            replicas: None,
            max_memory: None,
            image: None,
            image_pull_policy: PullPolicy::default(),
            resources: None,
            append_only: true,
            storage: StorageSpec::default(),
            password_secret_ref: None,
            scheduling: Scheduling::default(),
            pod_security_context: None,
            security_context: None,
        }
    }
}

/// Persistent storage of Redis. enabled, size and storageClassName are fixed at creation:
/// a StatefulSet's volume claim templates cannot change (resize the PVC itself instead).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("(has(self.enabled) ? self.enabled : true) == (has(oldSelf.enabled) ? oldSelf.enabled : true) && (has(self.size) ? self.size : '1Gi') == (has(oldSelf.size) ? oldSelf.size : '1Gi') && has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)").message("redis.storage enabled, size and storageClassName cannot change after creation (StatefulSet volume claim templates are immutable); resize the PVC itself, or recreate the CanvasChat")
)]
pub struct StorageSpec {
    /// Use a PersistentVolumeClaim for /data. When false, an emptyDir is used and data is
    /// lost with the pod. Default: true.
    #[serde(default = "defaults::enabled")]
    pub enabled: bool,
    /// Requested volume size, a Kubernetes quantity. Default: 1Gi.
    #[serde(default = "defaults::storage_size")]
    #[schemars(regex(pattern = r"^[1-9][0-9]*(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"))]
    pub size: String,
    /// StorageClass of the claim. Unset uses the cluster's default class. Default: unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// Keep the PersistentVolumeClaim when the CanvasChat is deleted. Default: false (the
    /// claim is deleted with the StatefulSet; Redis holds only presence and rate-limit
    /// state).
    #[serde(default)]
    pub retain_on_delete: bool,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            size: defaults::storage_size(),
            storage_class_name: None,
            retain_on_delete: false,
        }
    }
}

/// A key in a Secret in the CanvasChat's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret. Default: password.
    #[serde(default = "defaults::password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Ingress exposing the gateway: `/api` (WebSocket) and `/` (frontend).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.tlsSecretName) || has(self.host)").message("host is required when tlsSecretName is set")
)]
pub struct IngressSpec {
    /// Create an Ingress. Default: false.
    #[serde(default)]
    pub enabled: bool,
    /// IngressClass to use. Default: unset (the cluster's default IngressClass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub class_name: Option<String>,
    /// Public host name, e.g. chat.example.com. Unset matches any host. Default: unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub host: Option<String>,
    /// Secret holding the TLS certificate for host (created by cert-manager when its
    /// annotation is set). Requires host. Default: unset (plain HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub tls_secret_name: Option<String>,
    /// Ingress annotations, e.g. cert-manager.io/cluster-issuer: letsencrypt, or the
    /// WebSocket timeouts your controller needs (see the chart README). The operator adds none
    /// of its own. Default: none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// HTTPRoute `NAME`: `/` to the gateway Service, attached to the given Gateways.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("size(self.parentRefs) >= 1").message("httpRoute.parentRefs needs at least one Gateway")
)]
pub struct HttpRouteSpec {
    /// The Gateways (or listeners of them) the route attaches to, as Gateway API
    /// ParentReferences. At least one.
    #[schemars(length(min = 1, max = 32))]
    pub parent_refs: Vec<ParentReference>,
    /// Host names the route matches, e.g. chat.example.com. The first is the status URL.
    /// Default: none (the listeners' host names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(
            length(min = 1, max = 253),
            regex(
                pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
            )
        )
    )]
    pub hostnames: Vec<String>,
}

/// A Gateway API ParentReference (gateway.networking.k8s.io/v1).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// API group of the parent. Default: gateway.networking.k8s.io.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub group: Option<String>,
    /// Kind of the parent. Default: Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub kind: Option<String>,
    /// Namespace of the parent. Default: the CanvasChat's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Name of the parent.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Listener of the Gateway to attach to. Default: every listener that allows the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub section_name: Option<String>,
    /// Port of the Gateway listener to attach to. Default: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

/// Monitoring through the Prometheus Operator.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    /// Create a PodMonitor `NAME-gateway` (monitoring.coreos.com/v1) scraping the gateway pods'
    /// `metrics` port. Needs the Prometheus Operator CRDs in the cluster. Default: false.
    #[serde(default)]
    pub pod_monitor: bool,
}

/// How the gateway learns who a user is.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// The user id is the `uid` the page sends: anyone can appear as anyone.
    #[default]
    Anonymous,
    /// The user id is the `sub` of a signed token the page sends first.
    Jwt,
}

impl AuthMode {
    /// The value of CANVASCHAT_AUTH.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Anonymous => "anonymous",
            AuthMode::Jwt => "jwt",
        }
    }
}

/// Authentication of chat users (CANVASCHAT_AUTH and CANVASCHAT_JWT_*). In `jwt` mode exactly
/// one key source is named; keys from Secrets are mounted read-only as files, and a change of
/// the Secret's contents rolls the gateway.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(AUTH_ONE_KEY).message(AUTH_ONE_KEY_MESSAGE),
    validation = Rule::new(AUTH_JWT_ONLY).message(AUTH_JWT_ONLY_MESSAGE)
)]
pub struct AuthSpec {
    /// `anonymous` or `jwt`. Default: anonymous.
    #[serde(default)]
    pub mode: AuthMode,

    /// HS256: the key of a Secret (type Opaque, in the chat's namespace) holding the shared
    /// secret, at least 32 bytes (CANVASCHAT_JWT_HMAC_SECRET_FILE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret_ref: Option<KeySecretRef>,

    /// RS256/ES256: the key of a Secret (type Opaque, in the chat's namespace) holding the
    /// identity provider's RSA or P-256 public key in PEM (CANVASCHAT_JWT_PUBLIC_KEY_FILE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_secret_ref: Option<KeySecretRef>,

    /// RS256/ES256: the identity provider's JWKS URL, https (CANVASCHAT_JWT_JWKS_URL); keys
    /// are chosen by `kid`, cached, and fetched again for an unknown `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 9, max = 2048), regex(pattern = r"^https://[^\s]+$"))]
    pub jwks_url: Option<String>,

    /// Required `aud` of tokens, e.g. the client id the provider issues them for
    /// (CANVASCHAT_JWT_AUDIENCE). Default: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub audience: Option<String>,

    /// Required `iss` of tokens, the provider's issuer (CANVASCHAT_JWT_ISSUER).
    /// Default: not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub issuer: Option<String>,

    /// Where the page fetches its token: a path on the chat's host such as /auth/token, or an
    /// https URL on the same site (CANVASCHAT_AUTH_TOKEN_URL). It answers `{"token":"<JWT>"}`
    /// for a signed-in user and 401 otherwise. Default: none (the page shows signed out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^(/|https://)[^\s]*$"))]
    pub token_url: Option<String>,
}

/// A key in a Secret in the CanvasChat's namespace; both fields are required.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeySecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}
