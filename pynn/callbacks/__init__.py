"""Callbacks with Keras's hooks and semantics (base.py), and pynn's ActivationMonitor
(monitoring.py)."""
from .base import (BackupAndRestore, CSVLogger, Callback, LambdaCallback, CallbackList, EarlyStopping, History, LearningRateScheduler,
                   ModelCheckpoint, Progbar, ProgbarLogger, ReduceLROnPlateau, TerminateOnNaN,
                   is_terminal)
from .monitoring import ActivationMonitor
from .tensorboard import TensorBoard

__all__ = ["Callback", "CallbackList", "History", "Progbar", "ProgbarLogger", "EarlyStopping",
           "ModelCheckpoint", "LearningRateScheduler", "ReduceLROnPlateau", "CSVLogger",
           "TerminateOnNaN", "BackupAndRestore", "LambdaCallback", "TensorBoard", "ActivationMonitor", "is_terminal"]
