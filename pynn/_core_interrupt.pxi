# Ctrl-C inside long C calls (pynn/interrupts.py holds the policy; this holds the flag).
#
# While a fit/evaluate/predict runs on the main thread, pynn's SIGINT handler is the C
# function below: it raises pynn_sigint_flag, which the plan runner reads between steps
# (pynn_plan_feed.stop), and then calls the handler it replaced (Python's own, which queues
# the Python-level handler for the main thread).  So a whole-epoch C call ends after the
# step the signal arrived in, instead of at the end of the epoch.

cdef extern from *:
    """
    #include <signal.h>
    #include <string.h>
    static volatile int pynn_sigint_flag = 0;
    static struct sigaction pynn_sigint_previous;
    static void pynn_sigint_handler(int sig, siginfo_t *info, void *context) {
        pynn_sigint_flag = 1;
        if (pynn_sigint_previous.sa_flags & SA_SIGINFO) {
            if (pynn_sigint_previous.sa_sigaction != NULL)
                pynn_sigint_previous.sa_sigaction(sig, info, context);
        } else if (pynn_sigint_previous.sa_handler != SIG_DFL &&
                   pynn_sigint_previous.sa_handler != SIG_IGN &&
                   pynn_sigint_previous.sa_handler != NULL) {
            pynn_sigint_previous.sa_handler(sig);
        }
    }
    /* 1 when pynn_sigint_handler is SIGINT's handler now */
    static int pynn_sigint_is_installed(void) {
        struct sigaction now;
        if (sigaction(SIGINT, NULL, &now) != 0) return 0;
        return (now.sa_flags & SA_SIGINFO) && now.sa_sigaction == pynn_sigint_handler;
    }
    /* Put pynn_sigint_handler in front of SIGINT's handler now: 0, or -1 */
    static int pynn_sigint_install(void) {
        struct sigaction sa, old;
        if (pynn_sigint_is_installed()) return 0;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = pynn_sigint_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGINT, NULL, &old) != 0) return -1;
        pynn_sigint_previous = old;
        return sigaction(SIGINT, &sa, NULL);
    }
    """
    int pynn_sigint_flag
    int pynn_sigint_install()
    int pynn_sigint_is_installed()

cdef bint _sigint_armed = False          # the main thread is inside a pynn call
cdef bint _sigint_held = False           # ... finishing an epoch: runs go to their end
cdef unsigned long _sigint_main_ident = PyThread_get_thread_ident()


def sigint_arm(bint on):
    """Arm (or disarm) the flag for plan runs on the main thread; arming clears it and puts
    the C handler in front of the current one (Python's).  Returns whether it is armed."""
    global _sigint_armed, pynn_sigint_flag
    if not on:
        _sigint_armed = False
        return False
    pynn_sigint_flag = 0
    _sigint_armed = pynn_sigint_install() == 0
    return _sigint_armed


def sigint_hold(bint on):
    """While held, plan runs ignore the flag (it stays raised for later)."""
    global _sigint_held
    _sigint_held = on


def sigint_flag():
    """1 once a SIGINT arrived while armed (or since the last clear)."""
    return pynn_sigint_flag


def sigint_clear():
    global pynn_sigint_flag
    pynn_sigint_flag = 0


def sigint_handler_installed():
    return bool(pynn_sigint_is_installed())


cdef inline const int *_stop_flag() noexcept:
    """The flag for a plan run on this thread: armed and on the main thread, else NULL."""
    if _sigint_armed and not _sigint_held and PyThread_get_thread_ident() == _sigint_main_ident:
        return <const int *>&pynn_sigint_flag
    return NULL


def run_signal_handlers():
    """Run the Python-level signal handlers a signal has queued, now (PyErr_CheckSignals)."""
    if PyErr_CheckSignals() < 0:
        raise
