//! An HTTP/1.1 client for the tests: one request at a time on a kept-alive connection, every
//! read bounded by the deadline.

use super::DEADLINE;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

/// One HTTP/1.1 exchange on a (kept-alive) connection.
pub struct Http {
    pub reader: BufReader<TcpStream>,
}

pub struct Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Http {
    pub fn connect(addr: SocketAddr) -> Http {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Http { reader: BufReader::new(stream) }
    }

    pub fn get(&mut self, path: &str, headers: &str) -> Answer {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: procgate.test\r\n{headers}\r\n"))
    }

    /// `POST path` with `body` (its length given).
    pub fn post(&mut self, path: &str, body: &str) -> Answer {
        let length = body.len();
        self.send(&format!("POST {path} HTTP/1.1\r\nHost: procgate.test\r\nContent-Length: {length}\r\n\r\n{body}"))
    }

    fn send(&mut self, request: &str) -> Answer {
        self.reader.get_mut().write_all(request.as_bytes()).unwrap();
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).unwrap();
        let status =
            status_line.split_whitespace().nth(1).unwrap_or_else(|| panic!("{status_line:?}")).parse().unwrap();
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let Some((name, value)) = line.trim_end().split_once(": ") else { break };
            headers.insert(name.to_ascii_lowercase(), value.to_string());
        }
        let length = headers.get("content-length").map_or(0, |l| l.parse().unwrap());
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        Answer { status, headers, body: String::from_utf8(body).unwrap() }
    }
}
