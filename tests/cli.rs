//! The command line a user meets first: the signals named by `--version` and `start --help`,
//! and `deploy`'s flags (`-d/--root` the running app, `--from` the new release).

mod common;
use common::App;

#[test]
fn version_and_start_help_name_every_signal_procgate_reacts_to() {
    let app = App::new("tcp: sleep 1\n");
    for args in [&["--version"][..], &["start", "--help"]] {
        let finished = app.run(args);
        assert_eq!(finished.code(), Some(0), "{}", finished.text());
        let text = finished.text().replace('\n', " ");
        for signal in ["SIGINT", "SIGTERM", "SIGHUP", "SIGKILL", "SIGPIPE"] {
            assert!(text.contains(signal), "{args:?} names {signal}: {text}");
        }
    }
}

#[test]
fn deploy_with_the_old_root_flag_says_to_use_from() {
    let app = App::new("tcp: sleep 1\n");
    let release = tempfile::tempdir().unwrap();
    let finished = app.run(&["deploy", "--root", release.path().to_str().unwrap()]);
    assert_eq!(finished.code(), Some(1), "{}", finished.text());
    assert!(finished.has("no procgate is running in"), "{}", finished.text());
    assert!(finished.has("use `procgate deploy --from "), "{}", finished.text());
}
