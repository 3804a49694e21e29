//! Shutting down: every connection hears why before it is closed, and so does a late one.

use crate::common::*;
use ferrocast_engine::Input;

#[test]
fn shutdown_tells_every_connection_4200_then_closes_it_with_4200() {
    let mut sim = sim();
    let alice = open(&mut sim);
    let bob = open(&mut sim);
    subscribe(&mut sim, bob, "news");
    sim.take(bob);

    sim.input(Input::Shutdown).unwrap();

    for conn in [alice, bob] {
        // The simulator also checks that nothing is sent after the close.
        assert_error(&sim.take(conn), Some(4200));
        assert_eq!(sim.closed(conn).map(|(code, _)| code), Some(4200));
    }
    assert_no_state(&sim);
}

#[test]
fn a_connection_opened_after_shutdown_is_told_4200_and_closed_at_once() {
    let mut sim = sim();
    sim.input(Input::Shutdown).unwrap();

    let late = sim.connect("app-key");

    assert_error(&sim.take(late), Some(4200));
    assert_eq!(sim.closed(late).map(|(code, _)| code), Some(4200));
    assert_no_state(&sim);
}
