//! The running instances a main process hands to its successor: per instance what its slot
//! was (name, type, number, port, generation, pid, restarts, uptime, in routing, connections
//! served), what it runs (command and environment, which the successor checks against its own
//! release), the keeper's bytes the old main read but did not handle yet, and three fds,
//! its keeper's socket and the read ends of its stdout and stderr pipes. The successor adopts
//! them ([`crate::process::adopt`], [`crate::platform::lifecycle::Lifecycle::adopt`]): no app
//! restarts, no pid changes, and the keepers never see their socket close.
//!
//! Several messages: a count first, then the instances in batches that fit [`fdpass::MAX_FDS`].

use crate::fdpass;
use crate::platform::handed::{Crossing, Instance};
use serde::{Deserialize, Serialize};
use std::io::{Error, ErrorKind};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// The fds each instance comes with.
const FDS_EACH: usize = 3;
/// The instances in one message.
const BATCH: usize = fdpass::MAX_FDS / FDS_EACH;
/// The most instances a handover takes: far beyond a formation on one machine.
const MAX_INSTANCES: usize = 100_000;

#[derive(Serialize, Deserialize)]
struct Count {
    instances: usize,
}

/// Sends every instance with its fds; the caller's copies stay open.
pub fn send(stream: &UnixStream, instances: &[Crossing<BorrowedFd>]) -> std::io::Result<()> {
    fdpass::send(stream, &serde_json::to_vec(&Count { instances: instances.len() })?, &[])?;
    for batch in instances.chunks(BATCH) {
        let described: Vec<&Instance> = batch.iter().map(|c| &c.instance).collect();
        let fds: Vec<BorrowedFd> =
            batch.iter().flat_map(|c| [c.control.as_fd(), c.stdout.as_fd(), c.stderr.as_fd()]).collect();
        fdpass::send(stream, &serde_json::to_vec(&described)?, &fds)?;
    }
    Ok(())
}

/// Receives the instances [`send`] sent.
pub fn receive(stream: &UnixStream) -> std::io::Result<Vec<Crossing<OwnedFd>>> {
    let bad = |why: String| Error::new(ErrorKind::InvalidData, format!("the instances handed over: {why}"));
    let (message, _) = fdpass::receive(stream)?;
    let Count { instances: count } = serde_json::from_slice(&message).map_err(|err| bad(err.to_string()))?;
    if count > MAX_INSTANCES {
        return Err(bad(format!("{count} instances")));
    }
    let mut crossed = Vec::with_capacity(count);
    while crossed.len() < count {
        let (message, fds) = fdpass::receive(stream)?;
        let batch: Vec<Instance> = serde_json::from_slice(&message).map_err(|err| bad(err.to_string()))?;
        if batch.is_empty() || crossed.len() + batch.len() > count || fds.len() != batch.len() * FDS_EACH {
            return Err(bad(format!("a batch of {} instances with {} fds", batch.len(), fds.len())));
        }
        let mut fds = fds.into_iter();
        for instance in batch {
            let mut next = || fds.next().expect("counted above");
            crossed.push(Crossing { instance, control: next(), stdout: next(), stderr: next() });
        }
    }
    Ok(crossed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn instance(number: usize) -> Instance {
        Instance {
            name: format!("web.{number}"),
            type_name: "web".into(),
            number,
            port: Some(5000 + number as u16),
            generation: 2,
            pid: 200 + number as u32,
            restarts: 1,
            running_for_ms: 61_500,
            in_routing: true,
            served: 7,
            command: "python3 app.py".into(),
            env: [("PORT".to_string(), (5000 + number).to_string())].into(),
            unread: b"exit co".to_vec(),
        }
    }

    #[test]
    fn more_instances_than_one_message_holds_cross_with_their_sockets_and_pipes() {
        let count = BATCH + 5;
        let keepers: Vec<(UnixStream, UnixStream)> = (0..count).map(|_| UnixStream::pair().unwrap()).collect();
        let pipes: Vec<(OwnedFd, OwnedFd)> = (0..count).map(|_| nix::unistd::pipe().unwrap()).collect();
        let crossings: Vec<Crossing<BorrowedFd>> = (0..count)
            .map(|i| Crossing {
                instance: instance(i + 1),
                control: keepers[i].0.as_fd(),
                stdout: pipes[i].0.as_fd(),
                stderr: pipes[i].0.as_fd(),
            })
            .collect();
        let (a, b) = UnixStream::pair().unwrap();
        let sender = std::thread::scope(|scope| {
            let sending = scope.spawn(|| send(&a, &crossings));
            let received = receive(&b).unwrap();
            sending.join().unwrap().unwrap();
            received
        });
        assert_eq!(sender.len(), count);
        let (last, handed) = sender.into_iter().last().unwrap().handed();
        assert_eq!(last, instance(count));
        assert_eq!((handed.pid, last.adopted().running_for), (200 + count as u32, Duration::from_millis(61_500)));
        // The keeper's socket and the pipe are the very ones: what one end writes, the other reads.
        (&keepers[count - 1].1).write_all(b"exit code 0\n").unwrap();
        let mut got = [0_u8; 12];
        (&UnixStream::from(handed.control)).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"exit code 0\n");
        nix::unistd::write(&pipes[count - 1].1, b"line\n").unwrap();
        let mut line = [0_u8; 5];
        assert_eq!(nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&handed.stdout), &mut line).unwrap(), 5);
    }

    #[test]
    fn a_batch_that_does_not_match_its_count_is_refused() {
        let (a, b) = UnixStream::pair().unwrap();
        fdpass::send(&a, br#"{"instances":1}"#, &[]).unwrap();
        fdpass::send(&a, &serde_json::to_vec(&[instance(1)]).unwrap(), &[a.as_fd()]).unwrap();
        let err = receive(&b).err().unwrap();
        assert!(err.to_string().contains("a batch of 1 instances with 1 fds"), "{err}");
    }
}
