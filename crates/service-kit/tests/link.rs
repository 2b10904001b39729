//! The link loop against real Mosquitto brokers: fail-over over the host list, subscribing
//! only when the broker kept no session, asking again for a refused subscription on the same
//! connection, and stopping on the token while it waits to reconnect.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{
    MqttOptions, MqttState, Outgoing, Publish, QoS, SubscribeFilter, SubscribeReasonCode,
};
use service_kit::{Backoff, BrokerAddr, Failover, Link, LinkHandler};
use test_support::{Broker, BrokerOptions, Publisher, free_port, unique_client_id, wait_until};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous bound for what takes a moment on an idle machine: the test machine is shared.
const WAIT: Duration = Duration::from_secs(30);

/// What the link told its handler, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Connected {
        session_present: bool,
    },
    Publish(String),
    Subscribed,
    Refused,
    WroteSubscribe,
    /// Disconnected, the next attempt going to this broker.
    Failed(usize),
}

/// A handler that records everything, shared with the test.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    fn push(&self, seen: Seen) {
        self.0.lock().unwrap().push(seen);
    }

    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, want: &Seen) -> usize {
        self.seen().iter().filter(|s| *s == want).count()
    }

    async fn wait_for(&self, want: Seen) {
        wait_until(WAIT, &format!("the link reports {want:?}"), || async {
            self.count(&want) > 0
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; seen: {:?}", self.seen()));
    }
}

impl LinkHandler for Recorder {
    async fn connected(&mut self, session_present: bool, _: &mut MqttState) {
        self.push(Seen::Connected { session_present });
    }

    async fn publish(&mut self, publish: Publish) {
        self.push(Seen::Publish(publish.topic));
    }

    fn subscribed(&mut self, _: &[SubscribeReasonCode]) {
        self.push(Seen::Subscribed);
    }

    fn subscription_refused(&mut self) {
        self.push(Seen::Refused);
    }

    fn written(&mut self, packet: &Outgoing, _: &mut MqttState) {
        if matches!(packet, Outgoing::Subscribe(_)) {
            self.push(Seen::WroteSubscribe);
        }
    }

    fn disconnected(&mut self, next_broker: usize) {
        self.push(Seen::Failed(next_broker));
    }
}

fn local(port: u16) -> BrokerAddr {
    BrokerAddr {
        host: "127.0.0.1".into(),
        port,
    }
}

/// A link over `ports` with client id `id`, subscribing `filter` with QoS 1.
fn link(ports: &[u16], id: &str, clean_session: bool, backoff: Backoff, filter: &str) -> Link {
    let id = id.to_owned();
    let failover = Failover::new(
        ports.iter().copied().map(local).collect(),
        Box::new(move |broker| {
            let mut options = MqttOptions::new(id.clone(), &broker.host, broker.port);
            options.set_clean_session(clean_session);
            options
        }),
    );
    let filter = SubscribeFilter::new(filter.into(), QoS::AtLeastOnce);
    Link::new(failover, backoff, 16, vec![filter]).0
}

fn quick_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(20), Duration::from_millis(200))
}

/// Runs `link` with `recorder` in a task until the returned token fires; the task returns the
/// link.
fn spawn(mut link: Link, recorder: &Recorder) -> (CancellationToken, JoinHandle<Link>) {
    let stop = CancellationToken::new();
    let mut handler = recorder.clone();
    let token = stop.clone();
    let task = tokio::spawn(async move {
        link.run(&mut handler, &token).await;
        link
    });
    (stop, task)
}

async fn publish(port: u16, topic: &str) {
    let mut publisher = Publisher::connect(port).await;
    publisher
        .publish(topic, QoS::AtLeastOnce, false, "x")
        .await
        .unwrap();
    publisher.flush(WAIT).await.unwrap();
    publisher.disconnect().await;
}

#[tokio::test]
async fn fails_over_past_a_dead_broker_then_subscribes_and_delivers() {
    let broker = Broker::start().await;
    let dead = free_port();
    let recorder = Recorder::default();
    let link = link(
        &[dead, broker.port()],
        &unique_client_id("link"),
        true,
        quick_backoff(),
        "t/#",
    );
    let (stop, task) = spawn(link, &recorder);

    recorder.wait_for(Seen::Subscribed).await;
    let seen = recorder.seen();
    assert_eq!(
        seen[..2],
        [
            Seen::Failed(1),
            Seen::Connected {
                session_present: false
            }
        ],
        "{seen:?}"
    );
    publish(broker.port(), "t/1").await;
    recorder.wait_for(Seen::Publish("t/1".into())).await;

    stop.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("run returns once the token fires")
        .unwrap();
}

#[tokio::test]
async fn a_resumed_session_is_not_subscribed_again() {
    let broker = Broker::start().await;
    let id = unique_client_id("link-session");
    let first = Recorder::default();
    let (stop, task) = spawn(
        link(&[broker.port()], &id, false, quick_backoff(), "t/#"),
        &first,
    );
    first.wait_for(Seen::Subscribed).await;
    stop.cancel();
    let mut closed = task.await.unwrap();
    assert!(closed.disconnect(WAIT).await, "DISCONNECT written");

    let second = Recorder::default();
    let (stop, task) = spawn(
        link(&[broker.port()], &id, false, quick_backoff(), "t/#"),
        &second,
    );
    second
        .wait_for(Seen::Connected {
            session_present: true,
        })
        .await;
    // Delivered through the subscription the session kept; a SUBSCRIBE of ours would have
    // been written right after the CONNACK, before this publish could arrive.
    publish(broker.port(), "t/2").await;
    second.wait_for(Seen::Publish("t/2".into())).await;
    assert_eq!(
        second.count(&Seen::WroteSubscribe),
        0,
        "{:?}",
        second.seen()
    );
    assert_eq!(first.count(&Seen::WroteSubscribe), 1, "{:?}", first.seen());
    stop.cancel();
    task.await.unwrap();
}

/// Mosquitto's dynamic-security plugin; its `acl_file` never refuses a SUBSCRIBE, this does.
fn dynsec_plugin() -> PathBuf {
    if let Some(path) = std::env::var_os("MOSQUITTO_DYNSEC_PLUGIN") {
        return path.into();
    }
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
        "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
        "/usr/lib/mosquitto_dynamic_security.so",
        "/usr/local/lib/mosquitto_dynamic_security.so",
        "/opt/homebrew/lib/mosquitto_dynamic_security.so",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "mosquitto_dynamic_security.so not found in {candidates:?}: it ships with \
                 Mosquitto 2 (Debian: package mosquitto); set MOSQUITTO_DYNSEC_PLUGIN to its path"
            )
        })
}

/// Anonymous clients may not subscribe `denied/#` until the rule is removed through
/// `$CONTROL/dynamic-security/v1`, which they may publish to.
const DYNSEC: &str = r#"{
  "defaultACLAccess": {"publishClientSend": true, "publishClientReceive": true, "subscribe": true, "unsubscribe": true},
  "clients": [],
  "groups": [{"groupname": "anonymous", "roles": [{"rolename": "test"}], "clients": []}],
  "roles": [{"rolename": "test", "acls": [
    {"acltype": "subscribePattern", "topic": "denied/#", "priority": 0, "allow": false},
    {"acltype": "publishClientSend", "topic": "$CONTROL/dynamic-security/#", "priority": 0, "allow": true}
  ]}],
  "anonymousGroup": "anonymous"
}"#;

/// A broker whose dynamic-security config (written to `dir`) is [`DYNSEC`].
async fn dynsec_broker(dir: &std::path::Path) -> Broker {
    let config = dir.join("dynsec.json");
    std::fs::write(&config, DYNSEC).unwrap();
    Broker::start_with(BrokerOptions {
        extra_config: format!(
            "plugin {}\nplugin_opt_config_file {}\n",
            dynsec_plugin().display(),
            config.display()
        ),
        ..BrokerOptions::default()
    })
    .await
}

/// The dynamic-security command that lifts the `denied/#` rule.
const ALLOW_DENIED: &str = r#"{"commands":[{"command":"removeRoleACL","rolename":"test","acltype":"subscribePattern","topic":"denied/#"}]}"#;

#[tokio::test]
async fn a_refused_subscription_is_asked_for_again_until_granted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = dynsec_broker(dir.path()).await;
    let recorder = Recorder::default();
    let (stop, task) = spawn(
        link(
            &[broker.port()],
            &unique_client_id("link-refused"),
            true,
            quick_backoff(),
            "denied/#",
        ),
        &recorder,
    );
    wait_until(WAIT, "a second refusal", || async {
        recorder.count(&Seen::Refused) >= 2
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; seen: {:?}", recorder.seen()));
    let seen = recorder.seen();
    assert_eq!(
        seen[..5],
        [
            Seen::Connected {
                session_present: false
            },
            Seen::WroteSubscribe,
            Seen::Refused,
            Seen::WroteSubscribe,
            Seen::Refused,
        ],
        "asked again on the same connection: {seen:?}"
    );

    // The plugin disconnects the clients of a changed role; the link reconnects, subscribes
    // and is granted now.
    let mut admin = Publisher::connect(broker.port()).await;
    // QoS 0: Mosquitto 2.0 drops a client that publishes to `$CONTROL` with QoS 1.
    admin
        .publish(
            "$CONTROL/dynamic-security/v1",
            QoS::AtMostOnce,
            false,
            ALLOW_DENIED,
        )
        .await
        .unwrap();
    admin.flush(WAIT).await.unwrap();
    recorder.wait_for(Seen::Subscribed).await;
    publish(broker.port(), "denied/1").await;
    recorder.wait_for(Seen::Publish("denied/1".into())).await;
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn the_token_stops_the_link_while_it_waits_to_reconnect() {
    let recorder = Recorder::default();
    // A pause far longer than the test may wait: only the token can end it.
    let patient = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
    let (stop, task) = spawn(
        link(
            &[free_port()],
            &unique_client_id("link-stop"),
            true,
            patient,
            "t/#",
        ),
        &recorder,
    );
    recorder.wait_for(Seen::Failed(0)).await;
    stop.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("run returns once the token fires")
        .unwrap();
}
