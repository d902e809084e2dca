//! RFC 5424 syslog over UDP, TCP (octet counting, RFC 6587) and unix sockets.

use std::io::{self, BufWriter, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::time::Duration;

use crate::config::{Level, SyslogOutputConfig, SyslogTransport};
use crate::format::timestamp;
use crate::output::{Control, Line, Sink, SinkError};

enum Conn {
    Udp(UdpSocket),
    Tcp(BufWriter<TcpStream>),
    UnixDgram(UnixDatagram),
    UnixStream(BufWriter<UnixStream>),
}

/// Largest MSG part sent in one datagram.
const MAX_DATAGRAM: usize = 60 * 1024;

/// Sends every line as one RFC 5424 message; reconnects on the next batch after an error.
pub(crate) struct SyslogSink {
    transport: SyslogTransport,
    address: String,
    facility: u8,
    header_tail: String,
    conn: Option<Conn>,
    buf: Vec<u8>,
}

const fn severity(l: Level) -> u8 {
    match l {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Keeps printable ASCII (33–126), at most `max` characters; `-` when nothing is left.
fn header_field(s: &str, max: usize) -> String {
    let v: String = s.chars().filter(char::is_ascii_graphic).take(max).collect();
    if v.is_empty() { "-".into() } else { v }
}

impl SyslogSink {
    pub(crate) fn new(c: &SyslogOutputConfig, hostname: &str, pid: u32) -> Self {
        let header_tail = format!(
            " {} {} {pid} - - ",
            header_field(hostname, 255),
            header_field(&c.app_name, 48)
        );
        Self {
            transport: c.transport,
            address: c.address.clone(),
            facility: c.facility.code(),
            header_tail,
            conn: None,
            buf: Vec::new(),
        }
    }

    fn connect(&self) -> io::Result<Conn> {
        let timeout = Some(Duration::from_secs(5));
        match self.transport {
            SyslogTransport::Udp => {
                let addr = self.address.to_socket_addrs()?.next().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing")
                })?;
                let local = if addr.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let s = UdpSocket::bind(local)?;
                s.connect(addr)?;
                Ok(Conn::Udp(s))
            }
            SyslogTransport::Tcp => {
                let addr = self.address.to_socket_addrs()?.next().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing")
                })?;
                let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
                s.set_write_timeout(timeout)?;
                Ok(Conn::Tcp(BufWriter::new(s)))
            }
            SyslogTransport::Unix => {
                let s = UnixDatagram::unbound()?;
                match s.connect(&self.address) {
                    Ok(()) => Ok(Conn::UnixDgram(s)),
                    // A stream socket (e.g. rsyslog's imuxsock in stream mode).
                    Err(e) if e.raw_os_error() == Some(91) => {
                        let s = UnixStream::connect(&self.address)?;
                        s.set_write_timeout(timeout)?;
                        Ok(Conn::UnixStream(BufWriter::new(s)))
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Builds `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID - - MSG` into `self.buf`.
    fn message(&mut self, l: &Line) {
        self.buf.clear();
        let pri = u16::from(self.facility) * 8 + u16::from(severity(l.level));
        let mut head = format!("<{pri}>1 ");
        timestamp(&mut head, l.time);
        head.push_str(&self.header_tail);
        self.buf.extend_from_slice(head.as_bytes());
        let mut msg: &[u8] = &l.bytes;
        while let [rest @ .., b'\n' | b'\r'] = msg {
            msg = rest;
        }
        self.buf.extend_from_slice(msg);
    }

    fn send_all(&mut self, lines: &[Line]) -> Result<(), (io::Error, usize)> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().map_err(|e| (e, lines.len()))?);
        }
        for (i, l) in lines.iter().enumerate() {
            self.message(l);
            let lost = lines.len() - i;
            // Connected above.
            let Some(conn) = self.conn.as_mut() else {
                return Err((io::Error::other("not connected"), lost));
            };
            match conn {
                Conn::Udp(s) => {
                    let n = self.buf.len().min(MAX_DATAGRAM);
                    s.send(&self.buf[..n]).map_err(|e| (e, lost))?;
                }
                Conn::UnixDgram(s) => {
                    let n = self.buf.len().min(MAX_DATAGRAM);
                    s.send(&self.buf[..n]).map_err(|e| (e, lost))?;
                }
                Conn::Tcp(w) => octet_counted(w, &self.buf).map_err(|e| (e, lost))?,
                Conn::UnixStream(w) => octet_counted(w, &self.buf).map_err(|e| (e, lost))?,
            }
        }
        match self.conn.as_mut() {
            Some(Conn::Tcp(w)) => w.flush().map_err(|e| (e, 0)),
            Some(Conn::UnixStream(w)) => w.flush().map_err(|e| (e, 0)),
            _ => Ok(()),
        }
    }
}

fn octet_counted(w: &mut impl Write, msg: &[u8]) -> io::Result<()> {
    write!(w, "{} ", msg.len())?;
    w.write_all(msg)
}

impl Sink for SyslogSink {
    fn write(&mut self, lines: &[Line], _: &Control<'_>) -> Result<(), SinkError> {
        self.send_all(lines).map_err(|(e, lost)| {
            self.conn = None;
            SinkError::new(
                format!("syslog {:?} {}: {e}", self.transport, self.address),
                lost,
            )
        })
    }

    fn flush(&mut self, _: &Control<'_>) -> Result<(), SinkError> {
        Ok(())
    }
}
