"""Hydra callbacks of the main job: the results table after a run or a multirun, the zoo page
after a multirun of the seed zoo. Named in the configs (``hydra.callbacks``); kept here so that
the table and zoo command lines import no Hydra."""
import logging

from hydra.experimental.callback import Callback

from .report import report
from .zoo import report_zoo

log = logging.getLogger(__name__)


class PrintTable(Callback):
    """After a run or a multirun, write the table of its folder (``experiments.report.report``)
    and log it."""

    def on_run_end(self, config, **kwargs):
        self._report(config.hydra.runtime.output_dir)

    def on_multirun_end(self, config, **kwargs):
        self._report(config.hydra.sweep.dir)

    @staticmethod
    def _report(folder):
        try:
            text = report([folder], folder)
        except FileNotFoundError as err:          # the run failed before its first epoch ended
            log.warning("no results table: %s", err)
            return
        log.info("results (%s/table.md):\n%s", folder, text)


class ZooPage(Callback):
    """After a multirun, write the zoo page of its folder beside its table
    (``experiments.zoo.report_zoo``)."""

    def on_multirun_end(self, config, **kwargs):
        folder = config.hydra.sweep.dir
        try:
            report_zoo([folder], folder)
        except FileNotFoundError as err:          # no run finished an epoch
            log.warning("no zoo page: %s", err)
            return
        log.info("zoo page: %s/zoo.md", folder)
