"""A notebook open in JupyterLab, as a user sees and drives it (helpers for the browser tests)."""

from __future__ import annotations

import re
import time

from browser_lab import Browser, Lab, wait_for

ERROR_WIDGET = "Error displaying widget"


class NotebookPage:
    """Open ``path`` (relative to the Lab's root) and wait until its kernel is idle."""

    def __init__(self, browser: Browser, lab: Lab, path: str, kernel_timeout: float = 120) -> None:
        from selenium.webdriver.common.by import By  # optional dev dependency (see browser_lab.py)

        self.browser, self.driver, self.by = browser, browser.driver, By
        self.driver.get(lab.url(path))
        wait_for(lambda: self.driver.find_elements(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell"), 90,
                 f"{path} to render its cells")
        wait_for(self.kernel_idle, kernel_timeout, f"the kernel of {path} to start")
        time.sleep(1.0)  # let the stored outputs render

    # -- reading -------------------------------------------------------------------------------

    def kernel_idle(self) -> bool:
        """The status bar reads "<kernel> | Idle" (not Connecting, Starting or Busy)."""
        return bool(self.browser.js(
            "const bar = document.querySelector('#jp-main-statusbar');"
            "return bar ? /\\| Idle/.test(bar.innerText) : false;"))

    def scroll_through(self, pause: float = 0.3) -> str:
        """Bring every cell into view once, so that each stored output is rendered (JupyterLab
        renders only the cells near the view); returns the text of every cell as it was shown."""
        texts = []
        count = len(self.driver.find_elements(self.by.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell"))
        for index in range(count):
            cell = self.driver.find_elements(self.by.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")[index]
            self.driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", cell)
            time.sleep(pause)
            texts.append(self.driver.execute_script("return arguments[0].innerText;", cell))
        return "\n".join(texts)

    def text(self) -> str:
        return self.browser.js("return document.querySelector('.jp-NotebookPanel').innerText;")

    def code_cells(self):
        return self.driver.find_elements(self.by.CSS_SELECTOR, ".jp-NotebookPanel .jp-CodeCell")

    def prompt(self, index: int) -> str:
        cell = self.code_cells()[index]
        return cell.find_element(self.by.CSS_SELECTOR, ".jp-InputPrompt").text.strip()

    def plots(self) -> list[dict]:
        """Every plotly plot drawn on the page: its title, first-trace point count, colour axis."""
        return self.browser.js("""
            return Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => {
                const layout = p.layout || {}, data = p.data || [];
                const title = layout.title ? (layout.title.text || '') : '';
                const axis = layout.coloraxis || {};
                return {title: title, traces: data.length,
                        points: data.length && data[0].x ? Array.from(data[0].x).length : 0,
                        mode: data.length ? (data[0].mode || '') : '',
                        cmin: axis.cmin === undefined ? null : axis.cmin,
                        cmax: axis.cmax === undefined ? null : axis.cmax,
                        svg: p.querySelectorAll('.main-svg').length,
                        height: p.getBoundingClientRect().height};
            });""")

    def html_widgets(self) -> list[str]:
        return self.browser.js("return Array.from(document.querySelectorAll('.widget-html-content'))"
                               ".map(e => e.innerText);")

    # -- acting --------------------------------------------------------------------------------

    def run_cell(self, index: int, timeout: float = 300) -> None:
        """Select code cell ``index`` (0-based) and run it with Shift+Enter, then wait for it to finish."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        cell = self.code_cells()[index]
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", cell)
        cell.find_element(self.by.CSS_SELECTOR, ".jp-InputPrompt").click()
        ActionChains(self.driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        wait_for(lambda: self.prompt(index) not in ("[ ]:", ""), 20, f"code cell {index} to start")
        wait_for(lambda: "*" not in self.prompt(index) and self.kernel_idle(), timeout, f"code cell {index} to finish")

    def append_and_run(self, code: str, timeout: float = 120) -> None:
        """Add a code cell at the end (in the browser only: nothing is saved), type ``code``, run it."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        cells = self.driver.find_elements(self.by.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", cells[-1])
        cells[-1].find_element(self.by.CSS_SELECTOR, ".jp-InputPrompt").click()
        before = len(self.code_cells())
        ActionChains(self.driver).send_keys(Keys.ESCAPE).send_keys("b").perform()
        wait_for(lambda: len(self.code_cells()) == before + 1, 10, "the new cell")
        ActionChains(self.driver).send_keys(Keys.ENTER).send_keys(code).key_down(Keys.SHIFT).send_keys(
            Keys.ENTER).key_up(Keys.SHIFT).perform()
        index = before
        wait_for(lambda: re.match(r"\[\d+\]:", self.prompt(index)), timeout, f"the new cell {code!r} to run")
        wait_for(self.kernel_idle, timeout, "the kernel after the new cell")

    def save(self) -> None:
        """Ctrl+S, then wait until the tab is no longer marked modified."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        ActionChains(self.driver).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL).perform()
        wait_for(lambda: not self.driver.find_elements(self.by.CSS_SELECTOR, ".lm-TabBar-tab.jp-mod-dirty"), 30,
                 "the notebook to be saved")

    def leave(self) -> None:
        """Navigate away, accepting JupyterLab's "unsaved changes" prompt (nothing is saved)."""
        from selenium.common.exceptions import NoAlertPresentException

        self.driver.get("about:blank")
        try:
            self.driver.switch_to.alert.accept()
        except NoAlertPresentException:
            pass

    def button(self, label: str):
        return self.driver.find_element(
            self.by.XPATH, f"//button[contains(@class, 'widget-button') and normalize-space()='{label}']")

    def set_text_field(self, label: str, value: str) -> None:
        from selenium.webdriver.common.keys import Keys

        field = self.driver.find_element(
            self.by.XPATH, f"//div[contains(@class, 'widget-inline-hbox')][label[normalize-space()='{label}']]//input")
        field.click()
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(value, Keys.ENTER)

    def choose(self, label: str, option: str) -> None:
        """Pick ``option`` (its visible text) in the dropdown labelled ``label``."""
        from selenium.webdriver.support.ui import Select

        Select(self.driver.find_element(
            self.by.XPATH, f"//div[contains(@class, 'widget-inline-hbox')][label[normalize-space()='{label}']]//select"
        )).select_by_visible_text(option)

    def slider_handle(self, label: str):
        return self.driver.find_element(
            self.by.XPATH, f"//div[contains(@class, 'widget-slider')][label[normalize-space()='{label}']]"
                           "//*[contains(@class, 'noUi-handle')]")

    def slider_readout(self, label: str) -> str:
        return self.driver.find_element(
            self.by.XPATH, f"//div[contains(@class, 'widget-slider')][label[normalize-space()='{label}']]"
                           "//*[contains(@class, 'widget-readout')]").text.strip()

    def wait_text(self, text: str, timeout: float) -> None:
        wait_for(lambda: text in self.text(), timeout, f"{text!r} on the page")
