"""Runs a command under a pseudo-terminal the way a person at a terminal would.

Usage: pty_driver.py SECONDS KEYS COMMAND...
Waits SECONDS while collecting the screen output, types KEYS (nothing when KEYS is empty),
then waits up to 20 s for the command to exit. Prints the transcript, then a last line
`EXIT <code> RAW <0|1>`: the exit code (128+N for a signal) and whether the terminal was
left in raw mode (no ICANON or no ECHO) after the command exited.
"""
import fcntl, os, pty, select, struct, sys, termios, time

seconds, keys, argv = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
out = bytearray()

def pump(until):
    while time.time() < until:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return False
            if not data:
                return False
            out.extend(data)
    return True

pump(time.time() + seconds)
if keys:
    os.write(fd, keys.encode())
deadline = time.time() + 20
status = None
while time.time() < deadline:
    done, st = os.waitpid(pid, os.WNOHANG)
    if done:
        status = st
        break
    pump(time.time() + 0.1)
raw = 0
try:
    lflag = termios.tcgetattr(fd)[3]
    raw = int(not (lflag & termios.ICANON) or not (lflag & termios.ECHO))
except termios.error:
    pass
pump(time.time() + 0.2)
if status is None:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    code = -1
elif os.WIFEXITED(status):
    code = os.WEXITSTATUS(status)
else:
    code = 128 + os.WTERMSIG(status)
sys.stdout.write(out.decode("utf-8", "replace"))
sys.stdout.write("\nEXIT %d RAW %d\n" % (code, raw))
