// A "select all" box for a table of checkboxes, and a live count of what is selected, so a
// selection of SIMs can be acted on in one go.
export function enhanceSelection(root: ParentNode): void {
  for (const all of root.querySelectorAll<HTMLInputElement>("input[data-select-all]")) {
    const form = all.form;
    if (!form) continue;
    const name = all.dataset.selectAll ?? "";
    const boxes = () =>
      Array.from(form.querySelectorAll<HTMLInputElement>(`input[type=checkbox][name="${name}"]`));
    const counter = form.querySelector<HTMLElement>("[data-selection-count]");
    const update = () => {
      const items = boxes();
      const chosen = items.filter((box) => box.checked).length;
      all.checked = chosen > 0 && chosen === items.length;
      all.indeterminate = chosen > 0 && chosen < items.length;
      if (counter) counter.textContent = chosen === 1 ? "1 selected" : `${chosen} selected`;
    };
    all.addEventListener("change", () => {
      for (const box of boxes()) box.checked = all.checked;
      update();
    });
    form.addEventListener("change", (event) => {
      if (event.target !== all) update();
    });
    update();
  }
}
