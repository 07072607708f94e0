//! A TCP client for the tests: one line at a time, every read bounded by the deadline.

use super::DEADLINE;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};

/// A client connection with line reads and a deadline (like `nc`).
pub struct Client {
    pub reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(DEADLINE))?;
        Ok(Client { reader: BufReader::new(stream) })
    }

    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line.trim_end().to_string()
    }

    pub fn send(&mut self, text: &str) {
        self.reader.get_mut().write_all(format!("{text}\n").as_bytes()).unwrap();
    }

    /// The instance named in the greeting `hello tcp.2 PID`.
    pub fn greeting(&mut self) -> Option<String> {
        let line = self.line();
        line.strip_prefix("hello ").map(|rest| rest.to_string())
    }
}
