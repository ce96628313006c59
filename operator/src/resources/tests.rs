use canvaschat_crds::CanvasChat;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

fn chat(spec_yaml: &str) -> CanvasChat {
    let doc = format!(
        "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {{name: demo, namespace: chat, uid: 1b4e28ba-2fa1-11d2-883f-0016d3cca427}}\nspec:\n{spec_yaml}\n"
    );
    serde_yaml::from_str(&doc).expect("fixture parses")
}

fn minimal() -> CanvasChat {
    chat("  {}")
}

fn env_of(d: &Deployment) -> Vec<k8s_openapi::api::core::v1::EnvVar> {
    pod_spec(d).containers[0].env.clone().unwrap_or_default()
}

fn pod_spec(d: &Deployment) -> &k8s_openapi::api::core::v1::PodSpec {
    d.spec.template.spec.as_ref().expect("pod spec")
}

#[test]
fn defaults_build_every_child_with_design_names() {
    let desired = build(&minimal()).expect("builds");
    let names: Vec<(String, String)> = desired
        .to_values()
        .expect("serialises")
        .iter()
        .map(|v| {
            (
                v["kind"].as_str().unwrap_or_default().to_owned(),
                v["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    let expected = [
        ("ConfigMap", "demo-config"),
        ("Service", "demo-redis-headless"),
        ("Service", "demo-redis"),
        ("NetworkPolicy", "demo-redis"),
        ("StatefulSet", "demo-redis"),
        ("Service", "demo-gateway"),
        ("Deployment", "demo-gateway"),
        ("HorizontalPodAutoscaler", "demo-gateway"),
        ("PodDisruptionBudget", "demo-gateway"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
        .collect();
    assert_eq!(names, expected);
    assert!(desired.ingress.is_none(), "ingress is off by default");
}

#[test]
fn every_child_is_labelled_and_owned() {
    let desired = build(&minimal()).expect("builds");
    for value in desired.to_values().expect("serialises") {
        let meta = &value["metadata"];
        assert_eq!(meta["namespace"], "chat");
        let labels = &meta["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "canvaschat");
        assert_eq!(labels["app.kubernetes.io/instance"], "demo");
        assert_eq!(
            labels["app.kubernetes.io/managed-by"],
            "canvaschat-operator"
        );
        assert!(
            labels["app.kubernetes.io/component"] == "gateway"
                || labels["app.kubernetes.io/component"] == "redis"
        );
        let owner = &meta["ownerReferences"][0];
        assert_eq!(owner["kind"], "CanvasChat");
        assert_eq!(owner["apiVersion"], "canvaschat.io/v1alpha1");
        assert_eq!(owner["name"], "demo");
        assert_eq!(owner["controller"], true);
        assert_eq!(owner["uid"], "1b4e28ba-2fa1-11d2-883f-0016d3cca427");
    }
}

#[test]
fn config_map_carries_gateway_env() {
    let desired = build(&minimal()).expect("builds");
    let data = desired.config_map.data.expect("data");
    let get = |k: &str| data.get(k).map(String::as_str);
    assert_eq!(get("CANVASCHAT_LISTEN"), Some("0.0.0.0:8080"));
    assert_eq!(
        get("CANVASCHAT_REDIS_URL"),
        Some("redis://demo-redis:6379/0")
    );
    assert_eq!(get("CANVASCHAT_MAX_MESSAGE_BYTES"), Some("4096"));
    assert_eq!(get("CANVASCHAT_RATE_LIMIT_PER_MINUTE"), Some("100"));
    assert_eq!(get("CANVASCHAT_PRESENCE_HEARTBEAT_SECONDS"), Some("60"));
    assert_eq!(get("CANVASCHAT_PRESENCE_TTL_SECONDS"), Some("300"));
    assert_eq!(get("CANVASCHAT_SHUTDOWN_GRACE_SECONDS"), Some("25"));
    assert_eq!(get("CANVASCHAT_MAX_CONNECTIONS"), Some("10000"));
    assert_eq!(get("CANVASCHAT_LOG_FORMAT"), Some("json"));
    assert_eq!(get("RUST_LOG"), Some("info"));
    assert_eq!(get("CANVASCHAT_ALLOWED_ORIGINS"), None);
}

#[test]
fn settings_reach_the_config_map() {
    let cc = chat(
        "  gateway:\n    settings:\n      maxMessageBytes: 8192\n      logLevel: debug\n      allowedOrigins: [https://a.example, https://b.example]\n",
    );
    let data = build(&cc).expect("builds").config_map.data.expect("data");
    assert_eq!(data["CANVASCHAT_MAX_MESSAGE_BYTES"], "8192");
    assert_eq!(data["RUST_LOG"], "debug");
    assert_eq!(
        data["CANVASCHAT_ALLOWED_ORIGINS"],
        "https://a.example,https://b.example"
    );
}

#[test]
fn gateway_deployment_defaults() {
    let d = build(&minimal()).expect("builds").gateway_deployment;
    let spec = &d.spec;
    assert_eq!(spec.replicas, None, "the HPA owns replicas by default");
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .expect("rolling update");
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
    let pod = pod_spec(&d);
    assert_eq!(pod.termination_grace_period_seconds, Some(35));
    let c = &pod.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("ghcr.io/canvaschat/canvaschat-gateway:0.1.0")
    );
    assert_eq!(
        c.ports.as_ref().expect("ports")[0].name.as_deref(),
        Some("http")
    );
    assert_eq!(c.ports.as_ref().expect("ports")[0].container_port, 8080);
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(path(&c.liveness_probe).as_deref(), Some("/health"));
    assert_eq!(path(&c.readiness_probe).as_deref(), Some("/ready"));
    assert_eq!(
        c.env_from.as_ref().expect("envFrom")[0]
            .config_map_ref
            .as_ref()
            .map(|r| r.name.as_str()),
        Some("demo-config")
    );
    assert!(
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .is_some()
    );
    let sc = c.security_context.as_ref().expect("security context");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_owned()])
    );
    let annotations = d
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .expect("annotations");
    assert_eq!(annotations[CONFIG_HASH_ANNOTATION].len(), 32);
    assert!(env_of(&d).is_empty());
}

#[test]
fn config_change_changes_the_pod_template_hash() {
    let hash = |cc: &CanvasChat| {
        build(cc)
            .expect("builds")
            .gateway_deployment
            .spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
            .expect("hash")
    };
    let base = hash(&minimal());
    assert_eq!(base, hash(&minimal()), "hash is deterministic");
    assert_ne!(
        base,
        hash(&chat("  gateway: {settings: {rateLimitPerMinute: 50}}"))
    );
    assert_ne!(
        base,
        hash(&chat("  redis: {passwordSecretRef: {name: redis-auth}}"))
    );
    // Scaling settings are not configuration and must not roll the pods.
    assert_eq!(
        base,
        hash(&chat("  gateway: {autoscaling: {maxReplicas: 20}}"))
    );
}

#[test]
fn autoscaling_off_sets_replicas_and_drops_the_hpa() {
    let desired = build(&chat(
        "  gateway: {replicas: 3, autoscaling: {enabled: false}}",
    ))
    .expect("builds");
    assert!(desired.hpa.is_none());
    assert_eq!(desired.gateway_deployment.spec.replicas, Some(3));
}

#[test]
fn hpa_targets_and_behaviour() {
    let hpa = build(&chat(
        "  gateway:\n    autoscaling: {minReplicas: 3, maxReplicas: 12, targetCPUUtilizationPercentage: 60, targetMemoryUtilizationPercentage: 75}\n",
    ))
    .expect("builds")
    .hpa
    .expect("hpa");
    let spec = hpa.spec;
    assert_eq!(spec.scale_target_ref.name, "demo-gateway");
    assert_eq!(spec.scale_target_ref.kind, "Deployment");
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(3), 12));
    let targets: Vec<(String, Option<i32>)> = spec
        .metrics
        .expect("metrics")
        .into_iter()
        .filter_map(|m| m.resource)
        .map(|r| (r.name, r.target.average_utilization))
        .collect();
    assert_eq!(
        targets,
        vec![
            ("cpu".to_owned(), Some(60)),
            ("memory".to_owned(), Some(75))
        ]
    );
    let behavior = spec.behavior.expect("behavior");
    let down = behavior.scale_down.expect("scale down");
    assert_eq!(down.stabilization_window_seconds, Some(300));
    assert_eq!(
        behavior
            .scale_up
            .expect("scale up")
            .stabilization_window_seconds,
        Some(0)
    );
}

#[test]
fn ingress_with_tls_and_annotations() {
    let ingress = build(&chat(
        "  ingress:\n    enabled: true\n    host: chat.example.com\n    tlsSecretName: chat-tls\n    annotations: {cert-manager.io/cluster-issuer: letsencrypt, nginx.ingress.kubernetes.io/proxy-read-timeout: \"7200\"}\n",
    ))
    .expect("builds")
    .ingress
    .expect("ingress");
    assert_eq!(ingress.metadata.name.as_deref(), Some("demo"));
    let annotations = ingress.metadata.annotations.clone().expect("annotations");
    assert_eq!(annotations["cert-manager.io/cluster-issuer"], "letsencrypt");
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"], "7200",
        "user annotations win"
    );
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"],
        "3600"
    );
    let spec = ingress.spec.expect("spec");
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    let tls = spec.tls.expect("tls");
    assert_eq!(tls[0].secret_name.as_deref(), Some("chat-tls"));
    assert_eq!(tls[0].hosts, Some(vec!["chat.example.com".to_owned()]));
    let rule = &spec.rules.expect("rules")[0];
    assert_eq!(rule.host.as_deref(), Some("chat.example.com"));
    let paths: Vec<_> = rule
        .http
        .as_ref()
        .expect("http")
        .paths
        .iter()
        .map(|p| p.path.clone().unwrap_or_default())
        .collect();
    assert_eq!(paths, ["/api", "/"]);
}

#[test]
fn ingress_without_tls() {
    let spec = build(&chat("  ingress: {enabled: true, host: chat.example.com}"))
        .expect("builds")
        .ingress
        .and_then(|i| i.spec)
        .expect("ingress");
    assert!(spec.tls.is_none());
}

#[test]
fn pdb_toggle() {
    let desired = build(&minimal()).expect("builds");
    let pdb = desired.pdb.expect("pdb").spec.expect("spec");
    assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
    assert!(
        build(&chat("  gateway: {podDisruptionBudget: {enabled: false}}"))
            .expect("builds")
            .pdb
            .is_none()
    );
}

#[test]
fn redis_statefulset_defaults() {
    let desired = build(&minimal()).expect("builds");
    let sts = desired.redis_statefulset.spec;
    assert_eq!(sts.replicas, Some(1));
    assert_eq!(sts.service_name.as_deref(), Some("demo-redis-headless"));
    let claim = &sts.volume_claim_templates.expect("claims")[0];
    let request = claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .map(|r| r["storage"].0.clone());
    assert_eq!(request.as_deref(), Some("1Gi"));
    assert_eq!(
        sts.persistent_volume_claim_retention_policy
            .and_then(|p| p.when_deleted)
            .as_deref(),
        Some("Delete")
    );
    let pod = sts.template.spec.expect("pod");
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("redis:7.4-alpine"));
    let args = c.args.clone().expect("args");
    assert!(args.windows(2).any(|w| w == ["--appendonly", "yes"]));
    assert!(c.readiness_probe.is_some() && c.liveness_probe.is_some());
    assert_eq!(
        pod.security_context.and_then(|s| s.run_as_non_root),
        Some(true)
    );

    let headless = desired.redis_headless_service.spec.expect("spec");
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    let client = desired.redis_service.spec.expect("spec");
    assert_eq!(client.ports.expect("ports")[0].port, 6379);
}

#[test]
fn redis_storage_options() {
    let sts = build(&chat(
        "  redis: {appendOnly: false, storage: {size: 5Gi, storageClassName: fast, retainOnDelete: true}}",
    ))
    .expect("builds")
    .redis_statefulset
    .spec;
    let claim = &sts.volume_claim_templates.clone().expect("claims")[0];
    assert_eq!(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref()),
        Some("fast")
    );
    assert_eq!(
        sts.persistent_volume_claim_retention_policy
            .and_then(|p| p.when_deleted)
            .as_deref(),
        Some("Retain")
    );
    let args = sts.template.spec.expect("pod").containers[0]
        .args
        .clone()
        .expect("args");
    assert!(args.windows(2).any(|w| w == ["--appendonly", "no"]));

    let sts = build(&chat("  redis: {storage: {enabled: false}}"))
        .expect("builds")
        .redis_statefulset
        .spec;
    assert!(sts.volume_claim_templates.is_none());
    let volumes = sts.template.spec.expect("pod").volumes.expect("volumes");
    assert!(volumes[0].empty_dir.is_some());
}

#[test]
fn redis_password_from_secret() {
    let desired = build(&chat(
        "  redis: {passwordSecretRef: {name: redis-auth, key: pw}}",
    ))
    .expect("builds");
    let data = desired.config_map.data.clone().expect("data");
    assert!(
        !data.contains_key("CANVASCHAT_REDIS_URL"),
        "URL moves to the pod env"
    );
    let env = env_of(&desired.gateway_deployment);
    assert_eq!(env[0].name, "REDIS_PASSWORD");
    let secret = env[0]
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("secret ref");
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("redis-auth", "pw")
    );
    assert_eq!(env[1].name, "CANVASCHAT_REDIS_URL");
    assert_eq!(
        env[1].value.as_deref(),
        Some("redis://:$(REDIS_PASSWORD)@demo-redis:6379/0")
    );

    let redis = desired.redis_statefulset.spec.template.spec.expect("pod");
    let c = &redis.containers[0];
    assert!(
        c.args
            .clone()
            .expect("args")
            .windows(2)
            .any(|w| w == ["--requirepass", "$(REDIS_PASSWORD)"])
    );
    let names: Vec<_> = c
        .env
        .clone()
        .expect("env")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["REDIS_PASSWORD", "REDISCLI_AUTH"]);
}

#[test]
fn network_policy_admits_only_this_chats_gateway() {
    let np = build(&minimal())
        .expect("builds")
        .redis_network_policy
        .spec
        .expect("spec");
    let target = np
        .pod_selector
        .and_then(|s| s.match_labels)
        .expect("target");
    assert_eq!(target["app.kubernetes.io/component"], "redis");
    let rule = &np.ingress.expect("ingress")[0];
    let from = rule.from.as_ref().expect("from")[0]
        .pod_selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .expect("from labels");
    assert_eq!(from["app.kubernetes.io/component"], "gateway");
    assert_eq!(from["app.kubernetes.io/instance"], "demo");
}

#[test]
fn scheduling_and_pull_secrets_reach_the_pods() {
    let cc = chat(
        "  imagePullSecrets: [{name: regcred}]\n  gateway:\n    imagePullPolicy: Always\n    scheduling:\n      nodeSelector: {pool: chat}\n      tolerations: [{key: dedicated, operator: Equal, value: chat, effect: NoSchedule}]\n",
    );
    let desired = build(&cc).expect("builds");
    let pod = pod_spec(&desired.gateway_deployment);
    assert_eq!(
        pod.image_pull_secrets.as_ref().expect("secrets")[0].name,
        "regcred"
    );
    assert_eq!(
        pod.node_selector.as_ref().expect("selector")["pool"],
        "chat"
    );
    assert_eq!(pod.tolerations.as_ref().expect("tolerations").len(), 1);
    assert_eq!(
        pod.containers[0].image_pull_policy.as_deref(),
        Some("Always")
    );
    let redis_pod = desired.redis_statefulset.spec.template.spec.expect("pod");
    assert_eq!(
        redis_pod.image_pull_secrets.expect("secrets")[0].name,
        "regcred"
    );
    assert!(redis_pod.node_selector.is_none());
}

#[test]
fn objects_without_uid_have_no_owner_reference() {
    let cc: CanvasChat = serde_yaml::from_str(
        "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {name: demo}\nspec: {}\n",
    )
    .expect("parses");
    let desired = build(&cc).expect("builds");
    assert!(desired.config_map.metadata.owner_references.is_none());
    assert_eq!(
        desired.config_map.metadata.namespace.as_deref(),
        Some("default")
    );
}
