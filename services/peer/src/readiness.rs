//! Whether this peer is ready: its directory indexed and usable, and registered with the
//! tracker; not while draining. Published to `grpc.health.v1` (service "") and `/healthz`.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Mutex;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub(crate) struct Readiness {
    registered: AtomicBool,
    store_ok: AtomicBool,
    draining: AtomicBool,
    reporter: HealthReporter,
    /// Serialises publication so statuses reach the reporter in order.
    published: Mutex<Option<ServingStatus>>,
}

impl Readiness {
    /// Starts NOT_SERVING; the store is taken as usable (it was just indexed).
    pub(crate) async fn new(reporter: HealthReporter) -> Self {
        let r = Self {
            registered: AtomicBool::new(false),
            store_ok: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            reporter,
            published: Mutex::new(None),
        };
        r.publish().await;
        r
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.registered.load(Ordering::SeqCst)
            && self.store_ok.load(Ordering::SeqCst)
            && !self.draining.load(Ordering::SeqCst)
    }

    /// Why the peer is not ready, in words (empty when it is): what the page shows next to
    /// "not ready".
    pub(crate) fn why_not(&self) -> Vec<&'static str> {
        let mut why = Vec::new();
        if self.draining.load(Ordering::SeqCst) {
            why.push("leaving the network");
        }
        if !self.registered.load(Ordering::SeqCst) {
            why.push("not registered with the tracker (is it running, and is tracker.endpoint its address?)");
        }
        if !self.store_ok.load(Ordering::SeqCst) {
            why.push("the share directory cannot be read or written");
        }
        why
    }

    pub(crate) async fn set_registered(&self, v: bool) {
        self.registered.store(v, Ordering::SeqCst);
        self.publish().await;
    }

    pub(crate) async fn set_store_ok(&self, v: bool) {
        if self.store_ok.swap(v, Ordering::SeqCst) != v {
            if v {
                tracing::info!("share directory usable again");
            } else {
                tracing::error!("share directory unusable: reporting NOT_SERVING");
            }
        }
        self.publish().await;
    }

    pub(crate) async fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.publish().await;
    }

    async fn publish(&self) {
        let mut last = self.published.lock().await;
        let status = if self.is_ready() {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if *last != Some(status) {
            self.reporter.set_service_status("", status).await;
            *last = Some(status);
        }
    }
}
