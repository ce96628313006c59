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

fn opts() -> BuildOptions {
    BuildOptions {
        gateway_image: "registry.example/gateway:9.9.9".into(),
        password_hash: Some("pwhash".into()),
        auth_secret_hash: None,
    }
}

fn pod_annotations(d: &Deployment) -> std::collections::BTreeMap<String, String> {
    d.spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default()
}

fn env_of(d: &Deployment) -> Vec<k8s_openapi::api::core::v1::EnvVar> {
    pod_spec(d).containers[0].env.clone().unwrap_or_default()
}

fn pod_spec(d: &Deployment) -> &k8s_openapi::api::core::v1::PodSpec {
    d.spec.template.spec.as_ref().expect("pod spec")
}

#[test]
fn defaults_build_every_child_with_design_names() {
    let desired = build(&minimal(), &opts()).expect("builds");
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
    let config_map = desired.config_map.metadata.name.clone().expect("name");
    assert!(config_map.starts_with("demo-config-") && config_map.len() == 12 + 20);
    let expected = [
        ("ConfigMap", config_map.as_str()),
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
    let desired = build(&minimal(), &opts()).expect("builds");
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
    let desired = build(&minimal(), &opts()).expect("builds");
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
    let data = build(&cc, &opts())
        .expect("builds")
        .config_map
        .data
        .expect("data");
    assert_eq!(data["CANVASCHAT_MAX_MESSAGE_BYTES"], "8192");
    assert_eq!(data["RUST_LOG"], "debug");
    assert_eq!(
        data["CANVASCHAT_ALLOWED_ORIGINS"],
        "https://a.example,https://b.example"
    );
}

#[test]
fn gateway_deployment_defaults() {
    let d = build(&minimal(), &opts())
        .expect("builds")
        .gateway_deployment;
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
    assert_eq!(c.image.as_deref(), Some("registry.example/gateway:9.9.9"));
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
        desired_config_map_name(&minimal()).as_deref()
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
    let annotations = pod_annotations(&d);
    assert_eq!(annotations[CONFIG_HASH_ANNOTATION].len(), 20);
    assert_eq!(annotations[SECRET_HASH_ANNOTATION], "pwhash");
    let env = env_of(&d);
    assert_eq!(env.len(), 1);
    assert_eq!(env[0].name, "CANVASCHAT_REDIS_PASSWORD");
}

fn desired_config_map_name(cc: &CanvasChat) -> Option<String> {
    build(cc, &opts()).expect("builds").config_map.metadata.name
}

#[test]
fn user_image_resources_and_security_win_over_the_defaults() {
    let cc = chat(
        "  gateway:\n    image: mine/gateway:1\n    resources: {requests: {cpu: 1}}\n    securityContext: {runAsNonRoot: true}\n  redis:\n    image: mine/redis:7\n",
    );
    let desired = build(&cc, &opts()).expect("builds");
    let c = &pod_spec(&desired.gateway_deployment).containers[0];
    assert_eq!(c.image.as_deref(), Some("mine/gateway:1"));
    let resources = c.resources.clone().expect("resources");
    assert!(
        resources.limits.is_none(),
        "the user's resources replace the default"
    );
    assert_eq!(
        c.security_context
            .as_ref()
            .and_then(|s| s.read_only_root_filesystem),
        None
    );
    let redis = desired.redis_statefulset.spec.template.spec.expect("pod");
    assert_eq!(redis.containers[0].image.as_deref(), Some("mine/redis:7"));
}

#[test]
fn config_maps_are_immutable_and_named_after_their_content() {
    let desired = build(&minimal(), &opts()).expect("builds");
    assert_eq!(desired.config_map.immutable, Some(true));
    let changed = chat("  gateway: {settings: {rateLimitPerMinute: 50}}");
    assert_ne!(
        desired_config_map_name(&minimal()),
        desired_config_map_name(&changed)
    );
    assert_eq!(
        desired_config_map_name(&minimal()),
        desired_config_map_name(&chat("  gateway: {autoscaling: {maxReplicas: 20}}"))
    );
}

#[test]
fn every_child_carries_its_desired_hash() {
    let desired = build(&minimal(), &opts()).expect("builds");
    for value in desired.to_values().expect("serialises") {
        let hash = value["metadata"]["annotations"][DESIRED_HASH_ANNOTATION]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(hash.len(), 20, "{}", value["kind"]);
    }
    let again = build(&minimal(), &opts()).expect("builds");
    assert_eq!(
        desired_hash(&desired.gateway_deployment),
        desired_hash(&again.gateway_deployment)
    );
    let other_image = BuildOptions {
        gateway_image: "registry.example/gateway:10.0.0".into(),
        ..opts()
    };
    let upgraded = build(&minimal(), &other_image).expect("builds");
    assert_ne!(
        desired_hash(&desired.gateway_deployment),
        desired_hash(&upgraded.gateway_deployment)
    );
    assert_eq!(
        desired_hash(&desired.redis_service),
        desired_hash(&upgraded.redis_service)
    );
}

#[test]
fn config_change_changes_the_pod_template_hash() {
    let hash = |cc: &CanvasChat| {
        build(cc, &opts())
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

    // Scaling settings are not configuration and must not roll the pods.
    assert_eq!(
        base,
        hash(&chat("  gateway: {autoscaling: {maxReplicas: 20}}"))
    );
}

#[test]
fn autoscaling_off_sets_replicas_and_drops_the_hpa() {
    let desired = build(
        &chat("  gateway: {replicas: 3, autoscaling: {enabled: false}}"),
        &opts(),
    )
    .expect("builds");
    assert!(desired.hpa.is_none());
    assert_eq!(desired.gateway_deployment.spec.replicas, Some(3));
}

#[test]
fn hpa_targets_and_behaviour() {
    let hpa = build(&chat(
        "  gateway:\n    autoscaling: {minReplicas: 3, maxReplicas: 12, targetCPUUtilizationPercentage: 60, targetMemoryUtilizationPercentage: 75}\n",
    ), &opts())
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

fn spec_has(key: &str) -> bool {
    [
        "cert-manager.io/cluster-issuer",
        "nginx.ingress.kubernetes.io/proxy-read-timeout",
    ]
    .contains(&key)
}

#[test]
fn ingress_with_tls_and_annotations() {
    let ingress = build(&chat(
        "  ingress:\n    enabled: true\n    host: chat.example.com\n    tlsSecretName: chat-tls\n    annotations: {cert-manager.io/cluster-issuer: letsencrypt, nginx.ingress.kubernetes.io/proxy-read-timeout: \"7200\"}\n",
    ), &opts())
    .expect("builds")
    .ingress
    .expect("ingress");
    assert_eq!(ingress.metadata.name.as_deref(), Some("demo"));
    let annotations = ingress.metadata.annotations.clone().expect("annotations");
    assert_eq!(annotations["cert-manager.io/cluster-issuer"], "letsencrypt");
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"],
        "7200"
    );
    assert!(
        annotations
            .keys()
            .all(|k| k == DESIRED_HASH_ANNOTATION || spec_has(k)),
        "only the user's annotations and the desired hash: {annotations:?}"
    );
    let spec = ingress.spec.expect("spec");
    assert_eq!(
        spec.ingress_class_name, None,
        "the cluster's default IngressClass"
    );
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
    let spec = build(
        &chat("  ingress: {enabled: true, host: chat.example.com}"),
        &opts(),
    )
    .expect("builds")
    .ingress
    .and_then(|i| i.spec)
    .expect("ingress");
    assert!(spec.tls.is_none());
}

#[test]
fn pdb_toggle() {
    let desired = build(&minimal(), &opts()).expect("builds");
    let pdb = desired.pdb.expect("pdb").spec.expect("spec");
    assert_eq!(pdb.max_unavailable, Some(IntOrString::Int(1)));
    assert!(
        build(
            &chat("  gateway: {podDisruptionBudget: {enabled: false}}"),
            &opts()
        )
        .expect("builds")
        .pdb
        .is_none()
    );
}

#[test]
fn redis_statefulset_defaults() {
    let desired = build(&minimal(), &opts()).expect("builds");
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
    let args = c.command.clone().expect("command");
    assert!(args.windows(2).any(|w| w == ["--appendonly", "yes"]));
    assert!(args.windows(2).any(|w| w == ["--protected-mode", "yes"]));
    assert!(c.readiness_probe.is_some() && c.liveness_probe.is_some());
    assert_eq!(
        pod.security_context.and_then(|s| s.run_as_non_root),
        Some(true)
    );

    let headless = desired.redis_headless_service.spec.expect("spec");
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
    // The governing Service names pods before they are ready; the client one only ready pods.
    assert_eq!(headless.publish_not_ready_addresses, Some(true));
    let client = desired.redis_service.spec.expect("spec");
    assert_eq!(client.cluster_ip.as_deref(), Some("None"));
    assert_eq!(client.publish_not_ready_addresses, None);
    assert_eq!(
        client.selector.as_ref(),
        headless.selector.as_ref(),
        "both select the Redis pods"
    );
    let ports = client.ports.expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].port, 6379);
    assert_eq!(
        ports[0].target_port,
        Some(IntOrString::String("redis".into()))
    );
}

fn service_with_cluster_ip(cluster_ip: Option<&str>) -> Service {
    Service {
        spec: Some(k8s_openapi::api::core::v1::ServiceSpec {
            cluster_ip: cluster_ip.map(str::to_owned),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn only_a_change_between_headless_and_cluster_ip_recreates_a_service() {
    let desired = build(&minimal(), &opts()).expect("builds");
    // N-redis of an earlier operator: a ClusterIP Service.
    let old_redis = service_with_cluster_ip(Some("10.0.0.12"));
    assert!(service_needs_recreation(&desired.redis_service, &old_redis));
    let live_headless = service_with_cluster_ip(Some("None"));
    assert!(!service_needs_recreation(
        &desired.redis_service,
        &live_headless
    ));
    assert!(!service_needs_recreation(
        &desired.redis_headless_service,
        &live_headless
    ));
    // The gateway Service keeps its address; the API server's allocation is not a change.
    assert!(!service_needs_recreation(
        &desired.gateway_service,
        &old_redis
    ));
    assert!(service_needs_recreation(
        &desired.gateway_service,
        &live_headless
    ));
    let names: Vec<_> = desired
        .services()
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    assert_eq!(names, ["demo-redis-headless", "demo-redis", "demo-gateway"]);
}

#[test]
fn redis_storage_options() {
    let sts = build(&chat(
        "  redis: {appendOnly: false, storage: {size: 5Gi, storageClassName: fast, retainOnDelete: true}}",
    ), &opts())
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
        .command
        .clone()
        .expect("command");
    assert!(args.windows(2).any(|w| w == ["--appendonly", "no"]));

    let sts = build(&chat("  redis: {storage: {enabled: false}}"), &opts())
        .expect("builds")
        .redis_statefulset
        .spec;
    assert!(sts.volume_claim_templates.is_none());
    let volumes = sts.template.spec.expect("pod").volumes.expect("volumes");
    assert!(volumes[0].empty_dir.is_some());
}

fn secret_ref(env: &k8s_openapi::api::core::v1::EnvVar) -> (String, String) {
    let r = env
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("secret ref");
    (r.name.clone(), r.key.clone())
}

#[test]
fn redis_password_from_the_users_secret_never_in_a_url_or_argv() {
    let desired = build(
        &chat("  redis: {passwordSecretRef: {name: redis-auth, key: pw}}"),
        &opts(),
    )
    .expect("builds");
    let data = desired.config_map.data.clone().expect("data");
    assert_eq!(data["CANVASCHAT_REDIS_URL"], "redis://demo-redis:6379/0");
    let env = env_of(&desired.gateway_deployment);
    assert_eq!(env[0].name, "CANVASCHAT_REDIS_PASSWORD");
    assert_eq!(secret_ref(&env[0]), ("redis-auth".into(), "pw".into()));

    let redis = desired.redis_statefulset.spec.template.clone();
    let annotations = redis
        .metadata
        .and_then(|m| m.annotations)
        .expect("annotations");
    assert_eq!(annotations[SECRET_HASH_ANNOTATION], "pwhash");
    let c = &redis.spec.expect("pod").containers[0];
    let command = c.command.clone().expect("command").join(" ");
    assert!(!command.contains("requirepass $"), "{command}");
    assert!(command.contains("redis-server - \"$@\""), "{command}");
    assert!(c.args.is_none());
    let env = c.env.clone().expect("env");
    let names: Vec<_> = env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["REDIS_PASSWORD", "REDISCLI_AUTH"]);
    assert!(
        env.iter()
            .all(|e| secret_ref(e) == ("redis-auth".into(), "pw".into()))
    );
}

#[test]
fn generated_password_secret_by_default() {
    let cc = minimal();
    assert_eq!(
        password_secret(&cc),
        ("demo-redis-auth".to_owned(), "password".to_owned())
    );
    let desired = build(&cc, &opts()).expect("builds");
    let env = env_of(&desired.gateway_deployment);
    assert_eq!(
        secret_ref(&env[0]),
        ("demo-redis-auth".into(), "password".into())
    );
    let secret = generated_secret(&cc, &Names::of(&cc), "s3cret");
    assert_eq!(secret.metadata.name.as_deref(), Some("demo-redis-auth"));
    assert_eq!(secret.string_data.expect("data")["password"], "s3cret");
    assert!(secret.metadata.owner_references.is_some());
}

#[test]
fn password_rotation_rolls_both_pod_templates() {
    let other = BuildOptions {
        password_hash: Some("rotated".into()),
        ..opts()
    };
    let before = build(&minimal(), &opts()).expect("builds");
    let after = build(&minimal(), &other).expect("builds");
    assert_ne!(
        pod_annotations(&before.gateway_deployment),
        pod_annotations(&after.gateway_deployment)
    );
    assert_ne!(
        before.redis_statefulset.spec.template,
        after.redis_statefulset.spec.template
    );
}

#[test]
fn network_policy_admits_only_this_chats_gateway() {
    let np = build(&minimal(), &opts())
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
    let desired = build(&cc, &opts()).expect("builds");
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
    let desired = build(&cc, &opts()).expect("builds");
    assert!(desired.config_map.metadata.owner_references.is_none());
    assert_eq!(
        desired.config_map.metadata.namespace.as_deref(),
        Some("default")
    );
}

#[test]
fn http_route_sends_everything_to_the_gateway_service() {
    let cc = chat(
        "  httpRoute:\n    parentRefs: [{name: public, namespace: infra, sectionName: https}]\n    hostnames: [chat.example.com]\n",
    );
    let desired = build(&cc, &opts()).expect("builds");
    let route = desired.http_route.expect("route");
    assert_eq!(route.metadata.name.as_deref(), Some("demo"));
    assert_eq!(
        route.types.as_ref().map(|t| t.api_version.as_str()),
        Some("gateway.networking.k8s.io/v1")
    );
    assert!(desired_hash(&route).is_some());
    assert!(
        route.metadata.owner_references.is_some(),
        "garbage-collected with the chat"
    );
    let spec = &route.data["spec"];
    assert_eq!(
        spec["parentRefs"],
        serde_json::json!([{"name": "public", "namespace": "infra", "sectionName": "https"}])
    );
    assert_eq!(spec["hostnames"], serde_json::json!(["chat.example.com"]));
    assert_eq!(
        spec["rules"][0]["backendRefs"],
        serde_json::json!([{"name": "demo-gateway", "port": GATEWAY_SERVICE_PORT}])
    );
    assert_eq!(
        spec["rules"][0]["matches"][0]["path"],
        serde_json::json!({"type": "PathPrefix", "value": "/"})
    );
    assert_eq!(url(&cc), "http://chat.example.com");
    let kinds: Vec<_> = build(&cc, &opts())
        .expect("builds")
        .to_values()
        .expect("serialises")
        .into_iter()
        .map(|v| v["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(kinds.contains(&"HTTPRoute".to_owned()), "{kinds:?}");
}

#[test]
fn http_route_without_hostnames_or_field() {
    let cc = chat("  httpRoute:\n    parentRefs: [{name: public}]\n");
    let route = build(&cc, &opts())
        .expect("builds")
        .http_route
        .expect("route");
    assert!(route.data["spec"].get("hostnames").is_none());
    assert_eq!(url(&cc), "http://demo-gateway.chat.svc");
    assert!(
        build(&minimal(), &opts())
            .expect("builds")
            .http_route
            .is_none()
    );
}

#[test]
fn pod_monitor_scrapes_the_gateway_metrics_port() {
    assert!(
        build(&minimal(), &opts())
            .expect("builds")
            .pod_monitor
            .is_none()
    );
    let cc = chat("  monitoring: {podMonitor: true}\n");
    let desired = build(&cc, &opts()).expect("builds");
    let monitor = desired.pod_monitor.expect("pod monitor");
    assert_eq!(monitor.metadata.name.as_deref(), Some("demo-gateway"));
    assert_eq!(
        monitor.types.as_ref().map(|t| t.api_version.as_str()),
        Some("monitoring.coreos.com/v1")
    );
    let spec = &monitor.data["spec"];
    assert_eq!(
        spec["selector"]["matchLabels"],
        serde_json::to_value(selector_labels(&Names::of(&cc), Component::Gateway)).expect("labels")
    );
    let port = spec["podMetricsEndpoints"][0]["port"]
        .as_str()
        .expect("port");
    let ports = pod_spec(&desired.gateway_deployment).containers[0]
        .ports
        .clone()
        .unwrap_or_default();
    assert!(
        ports.iter().any(|p| p.name.as_deref() == Some(port)),
        "the PodMonitor's port {port} is a named port of the gateway container: {ports:?}"
    );
}
