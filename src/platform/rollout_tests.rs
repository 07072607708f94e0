//! The Rollout controller alone: the Scheduler's answers and reports are given by hand.

use super::*;
use std::time::Duration;

fn tells(steps: &[Step]) -> Vec<String> {
    steps.iter().filter_map(|s| if let Step::Tell { text, .. } = s { Some(text.clone()) } else { None }).collect()
}

/// A restart of `tcp` with two replacements (slots 2 and 3 for 0 and 1), booting.
fn restarting(rollouts: &mut Rollouts) {
    let steps = rollouts.request(Request::Restart { target: Some("tcp".into()), client: ClientId(7) });
    assert_eq!(
        steps,
        [
            Step::Busy(Some("restart of tcp".into())),
            Step::Tell { client: Some(ClientId(7)), text: "restart of tcp started".into() },
            Step::Replace(Selector::Restart(Some("tcp".into())))
        ]
    );
    assert!(rollouts
        .replacing(Ok(vec![(Some(SlotId(0)), Some(SlotId(2))), (Some(SlotId(1)), Some(SlotId(3)))]))
        .is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_restart_switches_when_every_replacement_is_ready_and_ends_when_the_old_ones_drained() {
    let mut rollouts = Rollouts::default();
    restarting(&mut rollouts);
    assert!(rollouts.report(Report::Ready { slot: SlotId(2) }, Instant::now()).is_empty(), "held until all are ready");
    assert!(rollouts.report(Report::Ready { slot: SlotId(2) }, Instant::now()).is_empty(), "counted once");
    let steps = rollouts.report(Report::Ready { slot: SlotId(3) }, Instant::now());
    assert_eq!(steps, [Step::Switch { news: vec![SlotId(2), SlotId(3)], olds: vec![SlotId(0), SlotId(1)] }]);
    let steps = rollouts.switched(Ok(()), Instant::now());
    assert_eq!(tells(&steps), ["routing switched: new connections go to the replacements"]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let steps = rollouts.report(Report::Drained { slot: SlotId(0), who: "tcp.1 (pid 100)".into() }, Instant::now());
    assert_eq!(tells(&steps), ["tcp.1 (pid 100) drained in 1.2s"]);
    assert!(rollouts
        .report(Report::Drained { slot: SlotId(0), who: "tcp.1 (pid 100)".into() }, Instant::now())
        .is_empty());
    let steps = rollouts.report(Report::Drained { slot: SlotId(1), who: "tcp.2 (pid 101)".into() }, Instant::now());
    let done = "restart of tcp done: 2 instances serving, the old ones drained".to_string();
    let tally = Step::Tally { kind: "restart", ok: true };
    assert_eq!(steps[1..], [Step::Finish { client: Some(ClientId(7)), ok: true, text: done }, tally, Step::Busy(None)]);
    assert!(!rollouts.is_busy());
}

#[test]
fn a_failed_replacement_abandons_the_others_and_the_next_rollout_begins() {
    let mut rollouts = Rollouts::default();
    restarting(&mut rollouts);
    let queued = rollouts.request(Request::Deploy { client: ClientId(8) });
    assert_eq!(tells(&queued), ["queued behind the rollout under way"]);
    let steps = rollouts.report(Report::Failed { slot: SlotId(3), why: "tcp.2 (pid 9) exited".into() }, Instant::now());
    let failed = "restart of tcp failed: tcp.2 (pid 9) exited; the old instances keep serving".to_string();
    assert_eq!(
        steps,
        [
            Step::Abandon { news: vec![SlotId(2), SlotId(3)] },
            Step::Finish { client: Some(ClientId(7)), ok: false, text: failed },
            Step::Tally { kind: "restart", ok: false },
            Step::Busy(Some("deploy".into())),
            Step::PlanDeploy { client: ClientId(8) },
        ]
    );
    assert!(rollouts.report(Report::Failed { slot: SlotId(2), why: "late".into() }, Instant::now()).is_empty());
}

#[test]
fn a_deploy_runs_its_release_step_first_and_commits_only_when_done() {
    let mut rollouts = Rollouts::default();
    rollouts.request(Request::Deploy { client: ClientId(1) });
    assert_eq!(rollouts.planned(Ok(true)), [Step::RunStep]);
    assert!(rollouts.step_started(Ok(SlotId(9))).is_empty());
    let steps = rollouts.report(Report::StepExited { slot: SlotId(9), reason: ExitReason::Code(0) }, Instant::now());
    assert_eq!(steps[1], Step::Replace(Selector::Deploy));
    rollouts.replacing(Ok(vec![(Some(SlotId(0)), Some(SlotId(4))), (Some(SlotId(1)), None)]));
    rollouts.report(Report::Ready { slot: SlotId(4) }, Instant::now());
    rollouts.switched(Ok(()), Instant::now());
    rollouts.report(Report::Drained { slot: SlotId(0), who: String::new() }, Instant::now());
    let steps = rollouts.report(Report::Drained { slot: SlotId(1), who: String::new() }, Instant::now());
    assert!(matches!(steps[0], Step::Finish { ok: true, .. }) && steps[2] == Step::Commit, "{steps:?}");
}

#[test]
fn a_failing_release_step_or_plan_discards_the_deploy() {
    let mut rollouts = Rollouts::default();
    rollouts.request(Request::Deploy { client: ClientId(1) });
    rollouts.planned(Ok(true));
    rollouts.step_started(Ok(SlotId(9)));
    let steps = rollouts.report(Report::StepExited { slot: SlotId(9), reason: ExitReason::Code(2) }, Instant::now());
    let text = "deploy failed: its release exited with code 2; nothing was changed".to_string();
    let tally = Step::Tally { kind: "deploy", ok: false };
    assert_eq!(
        steps,
        [Step::Finish { client: Some(ClientId(1)), ok: false, text }, tally, Step::Discard, Step::Busy(None)]
    );
    rollouts.request(Request::Deploy { client: ClientId(2) });
    let steps = rollouts.planned(Err("Procfile:1: bad".into()));
    assert_eq!(steps[0], Step::Finish { client: Some(ClientId(2)), ok: false, text: "Procfile:1: bad".into() });
}

#[test]
fn a_stop_during_a_deploys_release_step_never_starts_its_rollout() {
    let mut rollouts = Rollouts::default();
    rollouts.request(Request::Deploy { client: ClientId(1) });
    rollouts.planned(Ok(true));
    rollouts.step_started(Ok(SlotId(9)));
    rollouts.request(Request::Restart { target: None, client: ClientId(2) });
    let steps = rollouts.report(Report::Stopping, Instant::now());
    let interrupted = "deploy interrupted: procgate is stopping".to_string();
    assert_eq!(
        steps,
        [
            Step::Finish { client: Some(ClientId(2)), ok: false, text: "procgate is stopping".into() },
            Step::Finish { client: Some(ClientId(1)), ok: false, text: interrupted },
            Step::Tally { kind: "deploy", ok: false },
            Step::Discard,
            Step::Busy(None),
        ]
    );
    assert!(rollouts
        .report(Report::StepExited { slot: SlotId(9), reason: ExitReason::Code(0) }, Instant::now())
        .is_empty());
    let late = rollouts.request(Request::Restart { target: None, client: ClientId(3) });
    assert_eq!(late, [Step::Finish { client: Some(ClientId(3)), ok: false, text: "procgate is stopping".into() }]);
}

#[test]
fn a_cycle_of_an_instance_replaced_meanwhile_ends_quietly_and_a_failed_cycle_is_armed_again() {
    let mut rollouts = Rollouts::default();
    rollouts.request(Request::Cycle { slot: SlotId(0), name: "tcp.1".into() });
    assert_eq!(rollouts.replacing(Err(IntentRefused::Gone)), [Step::Busy(None)]);
    rollouts.request(Request::Cycle { slot: SlotId(1), name: "tcp.2".into() });
    rollouts.replacing(Ok(vec![(Some(SlotId(1)), Some(SlotId(5)))]));
    let steps = rollouts.report(Report::Failed { slot: SlotId(5), why: "R10".into() }, Instant::now());
    let rearmed = Step::ArmCycle { slot: SlotId(1), name: "tcp.2".into(), age: Duration::ZERO };
    assert!(steps.contains(&rearmed), "{steps:?}");
    let age = Duration::from_secs(3600);
    let steps = rollouts.report(Report::Spawned { slot: SlotId(6), name: "tcp.3".into(), age }, Instant::now());
    assert_eq!(steps, [Step::ArmCycle { slot: SlotId(6), name: "tcp.3".into(), age }]);
}

#[test]
fn a_type_that_woke_during_a_deploy_with_the_old_release_is_restarted_after_it() {
    let mut rollouts = Rollouts::default();
    let steps = rollouts.report(Report::Stale { type_name: "tcp".into() }, Instant::now());
    let said = ["tcp woke during the deploy with the previous release: restarting it", "restart of tcp started"];
    assert_eq!(tells(&steps), said);
    assert!(steps.contains(&Step::Replace(Selector::Refresh("tcp".into()))), "{steps:?}");
    assert_eq!(rollouts.underway().as_deref(), Some("restart of tcp"));
}
