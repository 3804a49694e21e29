//! A new configuration while running: apps added, changed and removed in place.
//!
//! Apps are keyed by their stable [`AppId`], so one app's change leaves every other app's
//! connections, channels and timers alone. A removed app's connections are closed with 4001
//! and a newly disabled one's with 4003, each told why first; an app that stays gets its new
//! secret, key, limits, origins and webhook endpoints for everything from now on (open
//! connections keep the client-event allowance they were given). A configuration that does not
//! validate changes nothing. Only the apps are reloaded: the other settings (timeouts, the
//! path prefix, the cluster) are the ones the engine started with.

use super::{App, Engine};
use crate::close_code::CloseCode;
use crate::config::{AppConfig, Config};
use crate::ids::{AppId, AppKey, ConnId};
use crate::origin::OriginPolicy;

/// What a reload changed, for its log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Reloaded {
    added: usize,
    changed: usize,
    removed: usize,
}

impl Engine {
    /// Serves `next`'s apps from now on, or, when `next` is invalid, says why and keeps the
    /// apps it has.
    pub(super) fn reload(&mut self, next: Config) {
        if let Err(error) = next.validate() {
            self.notice(
                None,
                format!("reload refused, the apps stay as they were: {error}"),
            );
            return;
        }
        let mut outcome = Reloaded::default();
        let mut settings_beside_apps = next.clone();
        settings_beside_apps.apps.clone_from(&self.config.apps);
        if settings_beside_apps != self.config {
            self.notice(
                None,
                "reload: settings other than the apps changed; they take effect at the next restart"
                    .into(),
            );
        }
        let wanted: Vec<(AppId, AppConfig)> = next
            .apps
            .iter()
            .map(|app| (AppId::new(&app.id), app.clone()))
            .collect();
        // Apps from the app store are not the file's to remove.
        let gone: Vec<AppId> = self
            .apps
            .keys()
            .filter(|id| !self.store.serves(id))
            .filter(|id| !wanted.iter().any(|(wanted, _)| wanted == *id))
            .cloned()
            .collect();
        for app in gone {
            self.remove_app(&app, CloseCode::APP_NOT_FOUND, "app removed");
            outcome.removed += 1;
        }
        for (id, config) in wanted {
            // An app the file now lists is the file's, no longer refreshed from the store.
            self.store.release(&id);
            // The file's apps win their keys: a store app holding one is no longer served
            // (it could not be reached by its key, and would later take the key back).
            if let Some(holder) = self.app_by_key.get(config.key.as_str()).cloned() {
                if holder != id && self.store.serves(&holder) {
                    self.store.release(&holder);
                    self.remove_app(
                        &holder,
                        CloseCode::APP_NOT_FOUND,
                        "app removed: the configuration gives its key to another app",
                    );
                    outcome.removed += 1;
                }
            }
            match self.apps.get(&id).map(|state| state.config == config) {
                Some(true) => {}
                Some(false) => {
                    self.change_app(&id, config);
                    outcome.changed += 1;
                }
                None => {
                    let state = App::new(config, &self.config);
                    self.app_by_key.insert(state.key.clone(), id.clone());
                    self.apps.insert(id.clone(), state);
                    self.cluster_app_added(&id);
                    outcome.added += 1;
                }
            }
        }
        self.config.apps = next.apps;
        let Reloaded {
            added,
            changed,
            removed,
        } = outcome;
        self.notice(
            None,
            format!("apps reloaded: {added} added, {changed} changed, {removed} removed"),
        );
    }

    /// Stops serving `app`: its connections are told why and closed with `code`, and its last
    /// webhooks (the leaves just caused) are sent rather than dropped with it.
    pub(super) fn remove_app(&mut self, app: &AppId, code: CloseCode, reason: &str) {
        self.close_app_connections(app, code, reason);
        self.with_webhooks(app, |hooks, cx| hooks.release_held_back(cx));
        if let Some(state) = self.apps.remove(app) {
            // The key may be another app's by now (a reload gave it away): leave that one's.
            if self.app_by_key.get(&state.key) == Some(app) {
                self.app_by_key.remove(&state.key);
            }
        }
        self.cluster_app_removed(app);
    }

    /// Gives a kept app its new settings; closes its connections if it is now disabled.
    pub(super) fn change_app(&mut self, id: &AppId, config: AppConfig) {
        let Some(state) = self.apps.get_mut(id) else {
            return;
        };
        let disabled = state.config.enabled && !config.enabled;
        if state.config.key != config.key {
            // Apps swapping keys in one reload: the other may have taken this one's already.
            if self.app_by_key.get(&state.key) == Some(id) {
                self.app_by_key.remove(&state.key);
            }
            state.key = AppKey::new(&config.key);
            self.app_by_key.insert(state.key.clone(), id.clone());
        }
        state.origins = OriginPolicy::new(&config.allowed_origins, config.require_origin);
        state.signer = crate::signature::Signer::new(&config.secret);
        state.webhooks.reconfigure(&config);
        // New rates start with a full allowance rather than the old limit's leftovers.
        if state.config.max_events_per_sec != config.max_events_per_sec {
            state.http_event_bucket = None;
        }
        if state.config.max_reads_per_sec != config.max_reads_per_sec {
            state.http_read_bucket = None;
        }
        state.config = config;
        if disabled {
            self.close_app_connections(id, CloseCode::APP_DISABLED, "app is disabled");
        }
    }

    /// Tells each connection of `app` why, then closes it with `code`.
    fn close_app_connections(&mut self, app: &AppId, code: CloseCode, reason: &str) {
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, connection)| &connection.app == app)
            .map(|(conn, _)| *conn)
            .collect();
        for conn in conns {
            self.close_with_error(conn, code, reason);
        }
    }
}
