//! Where the engine's webhooks go. Delivery with retries runs on its own thread behind this
//! seam; the event loop only hands deliveries over and never waits for them.

use ferrocast_engine::WebhookDelivery;

/// Receives webhook deliveries from the event loop; must return without blocking.
pub trait WebhookSink {
    /// Takes one signed delivery.
    fn deliver(&mut self, delivery: WebhookDelivery);
}

/// A sink that logs each delivery (the default until HTTP delivery is configured).
#[derive(Debug, Default)]
pub struct LogWebhooks;

impl WebhookSink for LogWebhooks {
    fn deliver(&mut self, delivery: WebhookDelivery) {
        tracing::info!(
            url = %delivery.url,
            body = %String::from_utf8_lossy(&delivery.body),
            "webhook (not delivered: no delivery worker yet)"
        );
    }
}

/// A sink that forwards deliveries over a channel, to a worker thread or a test.
impl WebhookSink for std::sync::mpsc::Sender<WebhookDelivery> {
    fn deliver(&mut self, delivery: WebhookDelivery) {
        if self.send(delivery).is_err() {
            tracing::warn!("webhook receiver is gone; delivery dropped");
        }
    }
}
