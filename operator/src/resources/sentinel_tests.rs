//! Render tests of sentinel mode.

use canvaschat_crds::CanvasChat;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

fn chat(name: &str, spec_yaml: &str) -> CanvasChat {
    let doc = format!(
        "apiVersion: canvaschat.io/v1alpha1\nkind: CanvasChat\nmetadata: {{name: {name}, namespace: chat, uid: 1b4e28ba-2fa1-11d2-883f-0016d3cca427}}\nspec:\n{spec_yaml}\n"
    );
    serde_yaml::from_str(&doc).expect("fixture parses")
}

fn sentinel_chat() -> CanvasChat {
    chat("demo", "  redis: {mode: sentinel}")
}

fn desired(cc: &CanvasChat) -> Desired {
    build(
        cc,
        &BuildOptions {
            password_hash: Some("pwhash".into()),
            ..Default::default()
        },
    )
    .expect("builds")
}

fn redis_pod(d: &Desired) -> PodSpec {
    d.redis_statefulset
        .spec
        .template
        .spec
        .clone()
        .expect("pod spec")
}

fn container<'a>(pod: &'a PodSpec, name: &str) -> &'a Container {
    pod.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("container {name}"))
}

fn env(c: &Container, name: &str) -> Option<String> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn script(c: &Container) -> String {
    c.command.clone().expect("command")[2].clone()
}

#[test]
fn standalone_has_no_sentinel_children() {
    let d = desired(&chat("demo", "  {}"));
    assert!(d.redis_sentinel_service.is_none() && d.redis_pdb.is_none());
    assert_eq!(d.redis_statefulset.spec.replicas, Some(1));
    assert_eq!(redis_pod(&d).containers.len(), 1);
    assert_eq!(
        d.config_map.data.expect("data")["CANVASCHAT_REDIS_URL"],
        "redis://demo-redis:6379/0"
    );
}

#[test]
fn sentinel_mode_runs_three_redis_pods_each_with_a_sentinel() {
    let d = desired(&sentinel_chat());
    assert_eq!(d.redis_statefulset.spec.replicas, Some(3));
    let pod = redis_pod(&d);
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["redis", "sentinel"]);
    let sentinel = container(&pod, "sentinel");
    assert_eq!(
        sentinel.ports.as_ref().expect("ports")[0].container_port,
        26379
    );
    assert_eq!(env(sentinel, "QUORUM").as_deref(), Some("2"));
    assert_eq!(
        env(sentinel, "INITIAL_MASTER").as_deref(),
        Some("demo-redis-0.demo-redis-headless.chat.svc 6379")
    );
    assert_eq!(
        env(sentinel, "ANNOUNCE_HOST").as_deref(),
        Some("$(POD_NAME).demo-redis-headless.chat.svc")
    );
    assert_eq!(
        env(sentinel, "SENTINELS").as_deref(),
        Some(
            "demo-redis-0.demo-redis-headless.chat.svc:26379 demo-redis-1.demo-redis-headless.chat.svc:26379 demo-redis-2.demo-redis-headless.chat.svc:26379"
        )
    );
    let conf = script(sentinel);
    for line in [
        "sentinel resolve-hostnames yes",
        "sentinel announce-hostnames yes",
        "sentinel monitor $SENTINEL_NAME $master $QUORUM",
        "sentinel auth-pass $SENTINEL_NAME \"$hex\"",
        "requirepass \"$hex\"",
    ] {
        assert!(conf.contains(line), "sentinel config lacks {line:?}");
    }
    let redis = script(container(&pod, "redis"));
    for line in [
        "masterauth \"$hex\"",
        "requirepass \"$hex\"",
        "replicaof $master",
    ] {
        assert!(redis.contains(line), "redis config lacks {line:?}");
    }
    // The sentinel config lives in a memory-backed volume, not on the read-only root.
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "sentinel")
        .and_then(|v| v.empty_dir.clone())
        .expect("sentinel emptyDir");
    assert_eq!(volume.medium.as_deref(), Some("Memory"));
}

#[test]
fn no_password_on_any_command_line() {
    let d = desired(&sentinel_chat());
    let pod = redis_pod(&d);
    for c in &pod.containers {
        let command = c.command.clone().expect("command").join(" ");
        assert!(!command.contains("pwhash"));
        // Only the start scripts read the password variable, to write it into a config.
        assert!(!command.contains("--requirepass") && !command.contains("--masterauth"));
        let from_secret = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "REDIS_PASSWORD")
            .and_then(|e| e.value_from.as_ref())
            .and_then(|v| v.secret_key_ref.as_ref())
            .map(|s| s.name.clone());
        assert_eq!(
            from_secret.as_deref(),
            Some("demo-redis-auth"),
            "{}",
            c.name
        );
    }
}

#[test]
fn gateways_use_the_sentinel_url_and_the_password_variable() {
    let d = desired(&sentinel_chat());
    assert_eq!(
        d.config_map.data.expect("data")["CANVASCHAT_REDIS_URL"],
        "redis-sentinel://demo-redis-0.demo-redis-headless.chat.svc:26379,demo-redis-1.demo-redis-headless.chat.svc:26379,demo-redis-2.demo-redis-headless.chat.svc:26379/0?sentinelServiceName=canvaschat"
    );
    let gateway = &d
        .gateway_deployment
        .spec
        .template
        .spec
        .expect("pod")
        .containers[0];
    assert!(
        gateway
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "CANVASCHAT_REDIS_PASSWORD")
    );
}

#[test]
fn five_replicas_mean_five_sentinels_and_quorum_three() {
    let d = desired(&chat("demo", "  redis: {mode: sentinel, replicas: 5}"));
    assert_eq!(d.redis_statefulset.spec.replicas, Some(5));
    let pod = redis_pod(&d);
    assert_eq!(
        env(container(&pod, "sentinel"), "QUORUM").as_deref(),
        Some("3")
    );
    let url = d.config_map.data.expect("data")["CANVASCHAT_REDIS_URL"].clone();
    assert_eq!(url.matches(":26379").count(), 5);
}

#[test]
fn sentinel_service_pdb_and_headless_ports() {
    let d = desired(&sentinel_chat());
    let svc = d.redis_sentinel_service.expect("sentinel service");
    assert_eq!(svc.metadata.name.as_deref(), Some("demo-redis-sentinel"));
    assert_eq!(svc.spec.expect("spec").ports.expect("ports")[0].port, 26379);
    let pdb = d.redis_pdb.expect("redis pdb");
    assert_eq!(pdb.metadata.name.as_deref(), Some("demo-redis"));
    assert_eq!(
        pdb.spec.expect("spec").max_unavailable,
        Some(IntOrString::Int(1))
    );
    let ports: Vec<i32> = d
        .redis_headless_service
        .spec
        .expect("spec")
        .ports
        .expect("ports")
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [6379, 26379]);
}

#[test]
fn network_policy_admits_gateways_and_redis_peers_on_both_ports() {
    let np = desired(&sentinel_chat())
        .redis_network_policy
        .spec
        .expect("spec");
    let rules = np.ingress.expect("rules");
    let components: Vec<String> = rules
        .iter()
        .map(|r| {
            r.from.as_ref().expect("from")[0]
                .pod_selector
                .as_ref()
                .and_then(|s| s.match_labels.clone())
                .expect("labels")["app.kubernetes.io/component"]
                .clone()
        })
        .collect();
    assert_eq!(components, ["gateway", "redis"]);
    for rule in &rules {
        let ports: Vec<Option<IntOrString>> = rule
            .ports
            .iter()
            .flatten()
            .map(|p| p.port.clone())
            .collect();
        assert_eq!(
            ports,
            [Some(IntOrString::Int(6379)), Some(IntOrString::Int(26379))]
        );
    }
}

#[test]
fn anti_affinity_preferred_unless_the_user_sets_affinity() {
    let pod = redis_pod(&desired(&sentinel_chat()));
    let preferred = pod
        .affinity
        .and_then(|a| a.pod_anti_affinity)
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution)
        .expect("preferred anti-affinity");
    assert_eq!(
        preferred[0].pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );
    let own = redis_pod(&desired(&chat(
        "demo",
        "  redis:\n    mode: sentinel\n    scheduling: {affinity: {nodeAffinity: {}}}",
    )));
    let affinity = own.affinity.expect("affinity");
    assert!(affinity.pod_anti_affinity.is_none() && affinity.node_affinity.is_some());
}

#[test]
fn maxmemory_with_noeviction_in_both_modes() {
    for mode in ["standalone", "sentinel"] {
        let pod = redis_pod(&desired(&chat(
            "demo",
            &format!("  redis: {{mode: {mode}}}"),
        )));
        let args = container(&pod, "redis").command.clone().expect("command");
        assert!(
            args.windows(2)
                .any(|w| w == ["--maxmemory-policy", "noeviction"])
        );
        // Three quarters of the default 256Mi limit.
        assert!(
            args.windows(2)
                .any(|w| w == ["--maxmemory", &(192u64 << 20).to_string()]),
            "{mode}: {args:?}"
        );
    }
    let pod = redis_pod(&desired(&chat("demo", "  redis: {maxMemory: 100mb}")));
    let args = container(&pod, "redis").command.clone().expect("command");
    assert!(args.windows(2).any(|w| w == ["--maxmemory", "100mb"]));
}

#[test]
fn longest_name_children_fit() {
    let name = format!("a{}", "b".repeat(canvaschat_crds::limits::MAX_NAME_LEN - 1));
    let d = desired(&chat(&name, "  redis: {mode: sentinel, replicas: 9}"));
    let sentinel = d.redis_sentinel_service.expect("service");
    assert!(sentinel.metadata.name.expect("name").len() <= 63);
    // Pod hostnames (N-redis-K) are DNS labels; the headless Service name too.
    assert!(format!("{name}-redis-8").len() <= 63);
    assert!(format!("{name}-redis-headless").len() <= 63);
    // One StatefulSet only: its pods' revision-hash label N-redis-<10> is the binding limit.
    assert!(format!("{name}-redis-0123456789").len() <= 63);
}
