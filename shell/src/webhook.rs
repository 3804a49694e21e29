//! Where the engine's webhooks go: the event loop hands each delivery to a sink and never
//! waits for it. The server's sink is [`crate::webhook_delivery::WebhookSender`].

use ferrocast_engine::WebhookDelivery;

/// Receives webhook deliveries from the event loop; must return without blocking.
pub trait WebhookSink {
    /// Takes one signed delivery.
    fn deliver(&mut self, delivery: WebhookDelivery);
}
