// concord-link: a user-space link emulator for launch/netns-cluster, for kernels without tc's
// netem qdisc. It reads every IP packet that a host sends into its TUN device, passes it
// through a PacketSwitch (uplink serialisation, delay, downlink serialisation), and writes it
// to the TUN device of the host that owns the destination address.
//
//   concord-link --delay 2 --rate 1gbit --ready-file /run/x/ready tun1=198.18.1.1 tun2=198.18.1.2
//
// Exit codes: 0 after SIGTERM or SIGINT, 1 for a failure while running, 2 for a bad command line.

import ConcordLink

#if canImport(Glibc)
  import Glibc
#endif

let options: LinkOptions
do {
  options = try LinkOptions.parse(Array(CommandLine.arguments.dropFirst()))
} catch {
  log("error: \(error)")
  exit(2)
}
if options.showsHelp {
  print(LinkOptions.usage)
  exit(0)
}

let emulator: LinkEmulator
do {
  emulator = try LinkEmulator(options: options)
} catch {
  log("error: \(error)")
  exit(1)
}
log("started: \(emulator.summary)")

// Every device exists now, and the ready file lets launch/netns-cluster move them into the
// hosts' namespaces.
if let readyFile = options.readyFile {
  let descriptor = open(readyFile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
  var text = "\(getpid())\n"
  let written = text.withUTF8 { write(descriptor, $0.baseAddress, $0.count) }
  guard descriptor >= 0, written == text.utf8.count, close(descriptor) == 0 else {
    log("error: cannot write the ready file \(readyFile): \(errnoText())")
    exit(1)
  }
}

var status: Int32 = 0
do {
  try emulator.run()
} catch {
  log("error: \(error)")
  status = 1
}
for line in emulator.counterLines() { log(line) }
log("stopped")
exit(status)
